"""`dialer asterisk check-config`: the shipped folder fits the dialer's defaults, and each thing
that would break a call is named with its file, line and what to do."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dialer.ami.events import typed_event
from dialer.ami.protocol import Message
from dialer.asterisk_check import check_dialer_config, check_folder
from dialer.asterisk_conf import (
    ERROR,
    WARNING,
    Problem,
    build_dialplan,
    extension_matches,
    find_extension,
    read_conf,
)
from dialer.asterisk_names import (
    CHANNEL_VARIABLES,
    EVENT_CLASSES,
    SetBy,
    required_read_classes,
    required_write_classes,
)
from dialer.cli import main
from dialer.config import (
    AgentConfig,
    AgiConfig,
    AmiConfig,
    AmiServerConfig,
    Config,
    DialingConfig,
    Secret,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "asterisk-conf"
CALLER_ID = '"Example Credit" <2125550100>'
PJSIP_TEMPLATE = "PJSIP/{number}@trunk"

Edit = Callable[[str, str, str], None]


def config(
    *,
    agents: tuple[AgentConfig, ...] = (),
    server: AmiServerConfig | None = None,
    agi: AgiConfig | None = None,
    **dialing: object,
) -> Config:
    """The defaults, with a real caller ID unless told, and the given dialing settings."""
    dialing.setdefault("caller_id", CALLER_ID)
    return Config(
        dialing=dataclasses.replace(DialingConfig(), **dialing),  # type: ignore[arg-type]
        agents=agents,
        ami=AmiConfig(servers=(server or AmiServerConfig(),)),
        agi=agi or AgiConfig(),
    )


def errors(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == ERROR]


def warnings(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == WARNING]


def line_of(path: Path, text: str) -> int:
    """The (first) line of `path` holding `text`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of the shipped folder to break."""
    folder = tmp_path / "etc"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("sounds"))
    return folder


@pytest.fixture
def edit(conf: Path) -> Edit:
    def change(name: str, old: str, new: str) -> None:
        path = conf / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new, 1))

    return change


# ---------------------------------------------------------------- the shipped folder


def test_the_shipped_folder_fits_the_default_config() -> None:
    problems = check_folder(SHIPPED, config())
    assert errors(problems) == []
    # The one thing left to the installer: the shipped AMI secret is public.
    assert [p.message.split(":")[0] for p in problems] == [
        "secret is the shipped, public placeholder"
    ]


def test_the_shipped_folder_fits_a_pjsip_trunk_with_lab_agents() -> None:
    agents = (AgentConfig("agent1", "Local/agent1@agents"),)
    problems = check_folder(SHIPPED, config(channel_template=PJSIP_TEMPLATE, agents=agents))
    assert errors(problems) == []


def test_the_shipped_manager_user_gets_the_classes_the_dialer_needs() -> None:
    user = read_conf(SHIPPED, "manager.conf").first("dialer")
    assert user is not None
    assert set(required_write_classes()) <= set((user.get("write") or "").split(","))
    assert set(required_read_classes()) <= set((user.get("read") or "").split(","))


# ---------------------------------------------------------------- one source for shared names


def test_the_variable_names_are_the_ones_the_engine_and_the_connect_script_set() -> None:
    engine = (ROOT / "dialer" / "engine.py").read_text()
    originate = set(re.findall(r'\("Variable", f"(\w+)=', engine))
    connect = (ROOT / "agi" / "connect.py").read_text()
    routed = set(re.findall(r'set_variable\("(\w+)"', connect))
    assert {v.name for v in CHANNEL_VARIABLES if v.set_by is SetBy.ORIGINATE} == originate
    assert {v.name for v in CHANNEL_VARIABLES if v.set_by is SetBy.CONNECT} == routed


def test_every_event_with_a_read_class_is_one_the_dialer_acts_on() -> None:
    for event in EVENT_CLASSES:
        assert event == "Newchannel" or typed_event(Message({"Event": event})) is not None, event


# ---------------------------------------------------------------- extension patterns


@pytest.mark.parametrize(
    ("pattern", "exten", "matches"),
    [
        ("s", "s", True),
        ("s", "t", False),
        ("_X.", "12125550123", True),
        ("_X.", "1", False),  # `.` wants at least one more character
        ("_X!", "1", True),  # `!` zero or more
        ("_x.", "42", True),  # X Z N in either case
        ("_X.", "+12125550123", False),
        ("_NXX", "212", True),
        ("_NXX", "112", False),
        ("_Z", "0", False),
        ("_Z", "9", True),
        ("_[0-9a-zA-Z].", "agent1", True),
        ("_[0-9a-zA-Z].", "-", False),
        ("_[13-5]", "4", True),
        ("_[13-5]", "2", False),
        ("_1-800-NXX", "1800222", True),  # dashes are decoration
        ("100", "1-00", True),
        ("_[]X", "5", True),  # an empty set is ignored
        ("_[12", "1", False),  # an unclosed set never matches
        ("_XX", "123", False),
    ],
)
def test_extension_patterns_follow_asterisk(pattern: str, exten: str, matches: bool) -> None:
    assert extension_matches(pattern, exten) is matches


def test_the_most_specific_extension_wins_and_includes_are_searched_after(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(
        "[a]\ninclude => b\nexten => _X.,1,NoOp()\nexten => _NXX,1,NoOp()\n"
        "exten => 212,1,NoOp()\n[b]\nexten => _[a-z].,1,NoOp()\n"
    )
    contexts, _ = build_dialplan(read_conf(tmp_path, "extensions.conf"))
    assert find_extension(contexts, "a", "212") == (contexts["a"], "212")
    assert find_extension(contexts, "a", "213") == (contexts["a"], "_NXX")
    assert find_extension(contexts, "a", "1234") == (contexts["a"], "_X.")
    assert find_extension(contexts, "a", "agent1") == (contexts["b"], "_[a-z].")


def test_comments_blocks_templates_and_additions_are_read_as_asterisk_does(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text(
        ";--------- a rule, not a block comment\n"
        "[base](!)\ntype = endpoint ; trailing comment\n"
        "[one](base)\ncontext = a\\;b\n"
        ";-- a block comment\n[hidden]\ntype = aor\n--;\n"
        "[one](+)\naors = one\n"
        "#include x-more.conf\n"
    )
    (tmp_path / "x-more.conf").write_text("[two](base)\n")
    conf = read_conf(tmp_path, "x.conf")
    assert conf.problems == []
    assert [(s.name, s.template) for s in conf.sections] == [
        ("base", True),
        ("one", False),
        ("two", False),
    ]
    one = conf.first("one")
    assert one is not None and (one.type, one.get("context"), one.get("aors")) == (
        "endpoint",
        "a;b",
        "one",
    )
    assert [s.name for s in conf.typed("endpoint")] == ["one", "two"]


def test_includes_by_absolute_path_and_by_pattern_are_followed_from_a_copy(tmp_path: Path) -> None:
    (tmp_path / "pjsip.d").mkdir()
    (tmp_path / "pjsip.conf").write_text(
        "#include /etc/asterisk/pjsip-one.conf\n#include pjsip.d/*.conf\n#tryinclude none.conf\n"
    )
    (tmp_path / "pjsip-one.conf").write_text("[one]\ntype = endpoint\n")
    (tmp_path / "pjsip.d" / "two.conf").write_text("[two]\ntype = endpoint\n")
    conf = read_conf(tmp_path, "pjsip.conf")
    assert conf.problems == []
    assert [s.name for s in conf.typed("endpoint")] == ["one", "two"]


# ---------------------------------------------------------------- extensions.conf


def test_missing_connect_context_is_reported_with_its_file(conf: Path, edit: Edit) -> None:
    edit("extensions.conf", "[dialer-connect]", "[dialer-connect-old]")
    assert any(
        e.startswith(
            "error: extensions.conf: no [dialer-connect] context, where the dialer's Originate lands"
        )
        for e in errors(check_folder(conf, config()))
    )


def test_a_connect_context_without_extension_s_is_reported_with_its_line(
    conf: Path, edit: Edit
) -> None:
    line = line_of(conf / "extensions.conf", "[dialer-connect]")
    edit("extensions.conf", "exten => s,1,NoOp(DIALER-CONNECT", "exten => x,1,NoOp(DIALER-CONNECT")
    assert f"error: extensions.conf:{line} [dialer-connect]: no extension matches 's'" in "\n".join(
        errors(check_folder(conf, config()))
    )


def test_the_originate_priority_must_exist(conf: Path) -> None:
    problems = errors(check_folder(conf, config(priority=100)))
    assert len(problems) == 1
    assert "'s' runs extension 's', which has no priority 100" in problems[0]


def test_a_local_channel_template_needs_an_extension_for_the_number(conf: Path, edit: Edit) -> None:
    edit("extensions.conf", "exten => _X.,1,Set(DEBTOR_NUMBER", "exten => _NXX,1,Set(DEBTOR_NUMBER")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.startswith("error: extensions.conf:")
    assert (
        "[debtor-sim]: no extension matches '12125550123', which dialing.channel_template"
        in problem
    )


def test_a_template_dialling_with_the_plus_does_not_match_a_digits_pattern(conf: Path) -> None:
    (problem,) = errors(check_folder(conf, config(channel_template="Local/{e164}@debtor-sim")))
    assert "no extension matches '+12125550123'" in problem


def test_an_agent_on_a_missing_local_context_is_named(conf: Path) -> None:
    agents = (AgentConfig("agent7", "Local/agent7@nowhere"),)
    (problem,) = errors(check_folder(conf, config(agents=agents)))
    assert problem == (
        "error: extensions.conf: no [nowhere] context, which agent agent7's channel "
        "'Local/agent7@nowhere' dials: add it"
    )


def test_a_dialplan_that_never_runs_the_connect_agi_is_reported(conf: Path, edit: Edit) -> None:
    edit(
        "extensions.conf",
        "AGI(${DIALER_AGI}/connect?attempt=${ATTEMPT_ID}&campaign=${CAMPAIGN_ID})",
        "NoOp(${DIALER_AGI} ${ATTEMPT_ID} ${CAMPAIGN_ID})",
    )
    assert any(
        "[dialer-connect]: never runs AGI(${DIALER_AGI}/connect?...)" in e
        for e in errors(check_folder(conf, config()))
    )


def test_agi_to_a_fixed_address_is_an_error_naming_the_line(conf: Path, edit: Edit) -> None:
    line = line_of(conf / "extensions.conf", "AGI(${DIALER_AGI}/connect")
    edit("extensions.conf", "AGI(${DIALER_AGI}/connect", "AGI(agi://10.9.9.9/connect")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.startswith(
        f"error: extensions.conf:{line} [dialer-connect]: AGI calls a fixed address"
    )


def test_a_default_agi_address_that_is_not_this_dialer_is_a_warning(conf: Path) -> None:
    agi = AgiConfig(advertise_host="10.0.0.9", port=4574)
    problems = check_folder(conf, config(agi=agi))
    assert errors(problems) == []
    line = line_of(conf / "extensions.conf", "DIALER_AGI_DEFAULT =")
    assert (
        f"warning: extensions.conf:{line} [globals]: DIALER_AGI_DEFAULT = agi://127.0.0.1:4573 "
        "is not this dialer's agi://10.0.0.9:4574"
    ) in "\n".join(warnings(problems))


def test_a_channel_variable_the_dialplan_never_reads_is_reported(conf: Path, edit: Edit) -> None:
    edit("extensions.conf", '$["${USE_AMD}" = "1"]', '$["${USE_AMD_X}" = "1"]')
    edit("extensions.conf", " lead=${LEAD_ID})", ")")
    problems = check_folder(conf, config())
    assert [e.split(": ", 2)[2] for e in errors(problems)] == [
        "never reads ${USE_AMD}, set by the dialer, as Originate Variable: headers"
    ]
    assert any("never reads ${LEAD_ID}" in w for w in warnings(problems))


def test_amd_asked_for_but_never_run_is_an_error(conf: Path, edit: Edit) -> None:
    edit("extensions.conf", "same => n(amd),AMD()", "same => n(amd),NoOp()")
    assert any(
        "never runs AMD(), which dialing.use_amd = true asks for" in e
        for e in errors(check_folder(conf, config()))
    )
    assert errors(check_folder(conf, config(use_amd=False))) == []


def test_the_header_table_lists_exactly_the_variables_the_dialer_sets(
    conf: Path, edit: Edit
) -> None:
    edit("extensions.conf", ";   ATTEMPT_ID, CAMPAIGN_ID, LEAD_ID", ";   ATTEMPT_ID, CAMPAIGN_ID")
    edit("extensions.conf", ";   ROUTE ", ";   OLD_ROUTE  gone\n;   ROUTE ")
    line = line_of(conf / "extensions.conf", "OLD_ROUTE")
    problems = check_folder(conf, config())
    assert errors(problems) == []
    assert "warning: extensions.conf: the header's table of channel variables lacks LEAD_ID" in (
        "\n".join(warnings(problems))
    )
    assert f"warning: extensions.conf:{line}: the header lists OLD_ROUTE" in "\n".join(
        warnings(problems)
    )


# ---------------------------------------------------------------- manager.conf


def test_a_missing_manager_user_is_named(conf: Path) -> None:
    server = AmiServerConfig(username="robot")
    (problem,) = errors(check_folder(conf, config(server=server)))
    assert problem.startswith(
        "error: manager.conf: no [robot] user, which ami.servers[0] (asterisk1) logs in as"
    )


def test_a_secret_that_differs_is_said_without_printing_either(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "secret = CHANGE-ME-dialer-ami-secret", "secret = asterisk-side-s3cret")
    server = AmiServerConfig(secret=Secret("dialer-side-s3cret"))
    (problem,) = errors(check_folder(conf, config(server=server)))
    line = line_of(conf / "manager.conf", "secret =")
    assert problem.startswith(f"error: manager.conf:{line} [dialer]: secret differs")
    assert "s3cret" not in problem
    server = AmiServerConfig(secret=Secret("asterisk-side-s3cret"))
    assert check_folder(conf, config(server=server)) == []


def test_a_write_class_missing_for_originate_is_reported(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "write = originate,call,", "write = call,")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.endswith("[dialer]: write = does not allow Originate: add originate")


def test_a_read_class_missing_for_varset_is_reported(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "read = system,call,dialplan", "read = system,call")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.endswith("read = lacks dialplan: the dialer never sees VarSet")


def test_write_all_allows_every_action(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "write = originate,call,reporting,system", "write = all")
    assert errors(check_folder(conf, config())) == []


def test_permit_that_leaves_the_dialer_out_is_reported(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "permit = 127.0.0.1/255.255.255.255", "permit = 10.0.0.0/8")
    (problem,) = errors(check_folder(conf, config()))
    assert "deny/permit refuse 127.0.0.1, where ami.servers[0] (asterisk1) connects from" in problem


def test_a_remote_dialer_against_a_loopback_bindaddr_is_reported(conf: Path) -> None:
    server = AmiServerConfig(host="10.0.0.5")
    agi = AgiConfig(advertise_host="10.0.0.9")
    found = "\n".join(errors(check_folder(conf, config(server=server, agi=agi))))
    assert (
        "[general]: bindaddr = 127.0.0.1, but ami.servers[0] (asterisk1) connects to 10.0.0.5"
        in found
    )
    assert "deny/permit refuse 10.0.0.9" in found


def test_ami_port_and_enabled_are_checked(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "enabled = yes", "enabled = no")
    found = "\n".join(errors(check_folder(conf, config(server=AmiServerConfig(port=5039)))))
    assert "[general]: AMI is off: set `enabled = yes`" in found
    assert "port = 5038, but ami.servers[0] (asterisk1) connects to port 5039" in found


# ---------------------------------------------------------------- pjsip


def test_a_trunk_that_is_not_defined_is_reported(conf: Path, edit: Edit) -> None:
    edit("pjsip_wizard.conf", "\n[trunk]\n", "\n[carrier]\n")
    (problem,) = errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE)))
    assert problem.startswith(
        "error: pjsip.conf: no endpoint 'trunk', which dialing.channel_template "
        "'PJSIP/{number}@trunk' dials: add a type = wizard section to pjsip_wizard.conf"
    )


def test_a_wizard_in_pjsip_conf_is_said_to_be_ignored_there(conf: Path) -> None:
    wizard = (conf / "pjsip_wizard.conf").read_text()
    (conf / "pjsip_wizard.conf").unlink()
    with (conf / "pjsip.conf").open("a") as f:
        f.write(wizard[wizard.index("\n[trunk]\n") :])
    found = errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE)))
    line = line_of(conf / "pjsip.conf", "type = wizard") - 1
    assert (
        f"error: pjsip.conf:{line} [trunk]: type = wizard is read from pjsip_wizard.conf only"
        in ("\n".join(found))
    )


def test_a_wizard_without_remote_hosts_is_reported(conf: Path, edit: Edit) -> None:
    edit("pjsip_wizard.conf", "remote_hosts = 127.0.0.1:5090", ";remote_hosts =")
    (problem,) = errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE)))
    assert problem.endswith("[trunk]: no remote_hosts: calls to the trunk go nowhere")


TRUNK_SECTIONS = """
[trunk]
type = endpoint
transport = transport-udp
context = from-trunk
aors = trunk

[trunk]
type = aor
contact = sip:sip.carrier.example
"""


def test_a_trunk_made_of_endpoint_and_aor_sections_is_understood(conf: Path) -> None:
    (conf / "pjsip_wizard.conf").unlink()
    with (conf / "pjsip.conf").open("a") as f:
        f.write(TRUNK_SECTIONS)
    assert errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE))) == []
    (conf / "pjsip.conf").write_text(
        (conf / "pjsip.conf").read_text().replace("aors = trunk", "aors = carrier")
    )
    (problem,) = errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE)))
    assert problem.endswith("[trunk]: aors = carrier: no such type = aor section")


def test_the_registration_variant_included_from_the_wizard_file_passes(
    conf: Path, edit: Edit
) -> None:
    shutil.copy(conf / "pjsip-trunk-register.conf.sample", conf / "pjsip-trunk-register.conf")
    wizard = conf / "pjsip_wizard.conf"
    text = wizard.read_text()
    text = text[: text.index("\n[trunk]")].replace(
        ";#include pjsip-trunk-register.conf", "#include pjsip-trunk-register.conf"
    )
    wizard.write_text(text)
    assert errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE))) == []
    edit("modules.conf", "load = res_pjsip_outbound_registration.so", "")
    (problem,) = errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE)))
    assert "res_pjsip_outbound_registration.so, needed for the trunk's registration" in problem
    (conf / "pjsip-trunk-register.conf").unlink()
    assert any(
        "#include pjsip-trunk-register.conf: no such file" in e
        for e in errors(check_folder(conf, config(channel_template=PJSIP_TEMPLATE)))
    )


def test_agent_phones_built_from_templates_are_endpoints(conf: Path, edit: Edit) -> None:
    agents = (AgentConfig("agent1", "PJSIP/agent1"),)
    (problem,) = errors(check_folder(conf, config(agents=agents)))
    assert "no endpoint 'agent1', which agent agent1's channel 'PJSIP/agent1' dials" in problem
    edit(
        "pjsip.conf",
        ";[agent1](agent-phone)\n;auth = agent1\n;aors = agent1\n;\n;[agent1](agent-auth)\n"
        ";username = agent1\n;password = CHANGE-ME-agent1-password\n;\n;[agent1](agent-aor)",
        "[agent1](agent-phone)\nauth = agent1\naors = agent1\n\n[agent1](agent-auth)\n"
        "username = agent1\npassword = CHANGE-ME-agent1-password\n\n[agent1](agent-aor)",
    )
    assert errors(check_folder(conf, config(agents=agents))) == []
    edit("pjsip.conf", "[agent1](agent-phone)", "[agent1](agent-fone)")
    found = errors(check_folder(conf, config(agents=agents)))
    assert any("[agent1]: template 'agent-fone' is not defined above" in e for e in found)


# ---------------------------------------------------------------- modules, files, the config


def test_a_module_the_call_flow_needs_must_load(conf: Path, edit: Edit) -> None:
    edit("modules.conf", "load = app_amd.so", ";load = app_amd.so")
    (problem,) = errors(check_folder(conf, config()))
    assert "app_amd.so, needed for AMD(), is not loaded: add `load = app_amd.so`" in problem
    edit("modules.conf", "\nautoload = no\n", "\nautoload = yes\nnoload = app_amd.so\n")
    (problem,) = errors(check_folder(conf, config()))
    assert "noload = app_amd.so, needed for AMD(): remove the line" in problem


def test_a_missing_file_is_one_line(conf: Path) -> None:
    (conf / "manager.conf").unlink()
    assert errors(check_folder(conf, config())) == [f"error: manager.conf: not found in {conf}"]
    assert errors(check_folder(conf / "nowhere", config())) == [
        f"error: {conf / 'nowhere'}: not a folder"
    ]


def test_a_file_that_is_not_text_is_one_line(conf: Path) -> None:
    (conf / "extensions.conf").write_bytes(b"[dialer-connect]\n\xff\xfe\n")
    assert errors(check_folder(conf, config())) == [
        "error: extensions.conf: cannot be read: not UTF-8 text"
    ]


def test_a_line_that_is_not_a_setting_is_reported_without_echoing_it(conf: Path) -> None:
    with (conf / "manager.conf").open("a") as f:
        f.write("secret-without-equals\n")
    (problem,) = errors(check_folder(conf, config()))
    assert "not `key = value`" in problem and "secret-without" not in problem


def test_the_placeholder_caller_id_is_a_warning() -> None:
    (problem,) = check_dialer_config(Config(), "dialer.toml")
    assert problem.severity == WARNING
    assert str(problem).startswith(
        'warning: dialer.toml [dialing]: caller_id is the placeholder "Collections" <8005550100>'
    )
    assert check_dialer_config(config(), "dialer.toml") == []


def test_the_recording_folder_must_exist_on_the_asterisk_host(tmp_path: Path) -> None:
    missing = tmp_path / "monitor"
    (problem,) = check_dialer_config(config(recording_dir=str(missing)), "dialer.toml")
    assert str(problem) == (
        f"error: dialer.toml [dialing]: recording_dir {missing} does not exist: create it, "
        "writable by the asterisk user"
    )
    missing.mkdir()
    assert check_dialer_config(config(recording_dir=str(missing)), "dialer.toml") == []
    # Asterisk elsewhere: its folders cannot be seen from here.
    remote = AmiServerConfig(host="10.0.0.5")
    assert check_dialer_config(config(recording_dir="/nope", server=remote), "x") == []


# ---------------------------------------------------------------- the command


def write_config(tmp_path: Path, secret: str = "CHANGE-ME-dialer-ami-secret") -> Path:
    path = tmp_path / "dialer.toml"
    path.write_text(
        f'[[ami.servers]]\nname = "pbx1"\nsecret = "{secret}"\n'
        f"[dialing]\ncaller_id = '{CALLER_ID}'\nchannel_template = \"{PJSIP_TEMPLATE}\"\n"
    )
    return path


def test_the_command_passes_the_shipped_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["asterisk", "check-config", str(SHIPPED), "--config", str(write_config(tmp_path))])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"ok: {SHIPPED}: 0 error(s), 1 warning(s)"
    assert main(["asterisk", "check-config", str(SHIPPED), "--strict"]) == 1


def test_the_command_fails_on_a_problem_and_never_prints_a_secret(
    tmp_path: Path, conf: Path, edit: Edit, capsys: pytest.CaptureFixture[str]
) -> None:
    edit("manager.conf", "secret = CHANGE-ME-dialer-ami-secret", "secret = asterisk-s3cret")
    path = write_config(tmp_path, secret="dialer-s3cret")
    assert main(["asterisk", "check-config", str(conf), "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "secret differs" in captured.out
    assert captured.out.splitlines()[-1] == f"FAILED: {conf}: 1 error(s), 0 warning(s)"
    assert main(["asterisk", "check-config", str(conf), "--config", str(path), "--json"]) == 1
    captured_json = capsys.readouterr()
    report = json.loads(captured_json.out)
    assert (report["ok"], report["errors"]) == (False, 1)
    assert report["problems"][0]["file"] == "manager.conf"
    for text in (captured.out, captured.err, captured_json.out, captured_json.err):
        assert "s3cret" not in text


def test_a_bad_dialer_config_is_an_error_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dialing]\nnope = 1\n")
    assert main(["asterisk", "check-config", str(SHIPPED), "--config", str(path)]) == 2
    assert "dialing.nope: unknown setting" in capsys.readouterr().err
