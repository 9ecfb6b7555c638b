"""`dialer asterisk check-config` and the nailed-up agent phones: the contexts, the variables
they read, the ConfBridge profiles, the modules and manager.conf's channelvars."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dialer.asterisk_check import check_folder
from dialer.asterisk_conf import ERROR, WARNING, Problem
from dialer.asterisk_names import DIALER_SET_VARIABLES, NAILED_VARIABLES
from dialer.config import AmiConfig, AmiServerConfig, Config, DialingConfig

SHIPPED = Path(__file__).resolve().parent.parent / "asterisk-conf"

Edit = Callable[[str, str, str], None]


def config() -> Config:
    dialing = DialingConfig(caller_id='"Example Credit" <2125550100>')
    return Config(dialing=dialing, ami=AmiConfig(servers=(AmiServerConfig(),)))


def errors(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == ERROR]


def warnings(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == WARNING]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
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


def test_the_shipped_folder_has_the_nailed_up_contexts_and_lists_their_variables() -> None:
    assert errors(check_folder(SHIPPED, config())) == []
    header = (SHIPPED / "extensions.conf").read_text().partition("[general]")[0]
    for name in (v.name for v in NAILED_VARIABLES):
        assert name in DIALER_SET_VARIABLES and f";   {name} " in header, name


@pytest.mark.parametrize("context", ["dialer-agent", "dialer-spy", "dialer-transfer"])
def test_a_missing_nailed_up_context_is_an_error(conf: Path, edit: Edit, context: str) -> None:
    edit("extensions.conf", f"[{context}]", f"[{context}-old]")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.startswith(f"error: extensions.conf: no [{context}] context, where ")


def test_a_connect_context_that_never_joins_the_target_bridge_is_an_error(
    conf: Path, edit: Edit
) -> None:
    edit("extensions.conf", 'GotoIf($["${TARGET_BRIDGE}" = ""]?noagent)', "NoOp()")
    edit(
        "extensions.conf",
        "ConfBridge(${TARGET_BRIDGE},dialer_agent_bridge,dialer_debtor)",
        "ConfBridge(agent-${TARGET_AGENT},dialer_agent_bridge,dialer_debtor)",
    )
    edit("extensions.conf", "CONFBRIDGE_INFO(marked,${TARGET_BRIDGE})", "CONFBRIDGE_INFO(marked,x)")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.endswith(
        "[dialer-connect]: never reads ${TARGET_BRIDGE}, set by the dialer's FastAGI connect script"
    )


def test_a_login_context_that_ignores_the_agents_conference_is_an_error(
    conf: Path, edit: Edit
) -> None:
    edit("extensions.conf", 'GotoIf($["${AGENT_CONF}" = ""]?refuse)', "NoOp()")
    edit("extensions.conf", "conference=${AGENT_CONF} ", "")
    edit("extensions.conf", "ConfBridge(${AGENT_CONF},", "ConfBridge(lobby,")
    (problem,) = errors(check_folder(conf, config()))
    assert "[dialer-agent]: never reads ${AGENT_CONF}, set by the dialer, on an agent's login" in (
        problem
    )


def test_a_debtor_profile_without_end_marked_is_an_error_at_its_line(
    conf: Path, edit: Edit
) -> None:
    line = line_of(conf / "confbridge.conf", "end_marked = yes")
    edit("confbridge.conf", "end_marked = yes", "end_marked = no")
    (problem,) = errors(check_folder(conf, config()))
    assert problem == (
        f"error: confbridge.conf:{line} [dialer_debtor]: user profile dialer_debtor lacks "
        "`end_marked = yes`, so a debtor stays on, alone, when the agent's phone drops: set it"
    )


def test_an_agent_joining_with_the_default_profile_is_not_marked(conf: Path, edit: Edit) -> None:
    edit(
        "extensions.conf",
        "ConfBridge(${AGENT_CONF},dialer_agent_bridge,dialer_agent)",
        "ConfBridge(${AGENT_CONF})",
    )
    line = line_of(conf / "extensions.conf", "ConfBridge(${AGENT_CONF})")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.startswith(
        f"error: extensions.conf:{line} [dialer-agent]: ConfBridge() joins with default_user, "
        "which is not `marked = yes`, so debtors are never put out"
    )


def test_a_profile_missing_from_confbridge_conf_is_named(conf: Path, edit: Edit) -> None:
    edit("confbridge.conf", "[dialer_agent_bridge]", "[dialer_bridge]")
    found = errors(check_folder(conf, config()))
    assert len(found) == 2  # the agent's and the debtor's ConfBridge() both name it
    assert all(
        "ConfBridge() names bridge profile dialer_agent_bridge, which confbridge.conf lacks" in e
        for e in found
    )


@pytest.mark.parametrize(
    "module, app", [("app_confbridge", "ConfBridge()"), ("app_chanspy", "ChanSpy()")]
)
def test_the_conference_and_spy_modules_must_load(
    conf: Path, edit: Edit, module: str, app: str
) -> None:
    edit("modules.conf", f"load = {module}.so", f";load = {module}.so")
    (problem,) = errors(check_folder(conf, config()))
    assert f"{module}.so, needed for {app}, is not loaded" in problem


def test_manager_channelvars_without_agent_id_is_a_warning(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "channelvars = AGENT_ID", "channelvars = LEAD_ID")
    problems = check_folder(conf, config())
    assert errors(problems) == []
    assert any("channelvars lacks AGENT_ID" in w for w in warnings(problems))


def test_a_transfer_context_that_never_dials_transfer_to_is_an_error(
    conf: Path, edit: Edit
) -> None:
    edit("extensions.conf", "to=${TRANSFER_TO})", "to=)")
    edit("extensions.conf", 'GotoIf($["${TRANSFER_TO}" = ""]?refuse)', "NoOp()")
    edit("extensions.conf", "Dial(${TRANSFER_TO},30)", "Dial(PJSIP/1000,30)")
    (problem,) = errors(check_folder(conf, config()))
    assert problem.endswith(
        "[dialer-transfer]: never reads ${TRANSFER_TO}, set by the dialer (AMI Setvar) before "
        "it redirects a debtor to a supervisor"
    )


def test_a_transfer_context_without_its_s_extension_is_an_error(conf: Path, edit: Edit) -> None:
    edit(
        "extensions.conf", "exten => s,1,NoOp(DIALER-TRANSFER", "exten => 1,1,NoOp(DIALER-TRANSFER"
    )
    (problem,) = errors(check_folder(conf, config()))
    assert "[dialer-transfer]: no extension matches 's', where a debtor redirected" in problem


def test_a_manager_user_without_call_cannot_transfer(conf: Path, edit: Edit) -> None:
    edit("manager.conf", "write = originate,call,reporting,system", "write = originate,system")
    found = errors(check_folder(conf, config()))
    for action in ("Setvar", "Redirect"):
        assert any(p.endswith(f"write = does not allow {action}: add call") for p in found)
