"""The shipped Asterisk configs keep the call-flow contract of dialer, FastAGI and simulator."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agi.connect import AnsweredCall, RouteDecision, make_connect_script
from agi.protocol import parse_network_script
from agi.server import FastAgiServer
from dialer.asterisk_names import ACTION_CLASSES, EVENT_CLASSES, required_write_classes
from sim.agi_client import run_agi
from tests.test_agi_sim_client import FakeChannel, ami_messages

CONF = Path(__file__).resolve().parent.parent / "asterisk-conf"

# What the dialer puts on every Originate (the contract).
ORIGINATE_VARIABLES = {"ATTEMPT_ID", "CAMPAIGN_ID", "LEAD_ID", "USE_AMD", "RECORD", "DIALER_AGI"}
# What Asterisk itself sets on the channel by the time dialer-connect reads it.
ASTERISK_VARIABLES = {"CHANNEL", "EXTEN", "AMDSTATUS", "AMDCAUSE", "AGISTATUS", "HANGUPCAUSE",
                      "DIALSTATUS", "CONFBRIDGE_RESULT"}  # fmt: skip


# ---------------------------------------------------------------- a small dialplan reader


@dataclass(frozen=True)
class Step:
    exten: str
    priority: int
    label: str | None
    app: str
    args: str


@dataclass
class Dialplan:
    contexts: dict[str, list[Step]] = field(default_factory=dict)
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # [general], [globals]

    def steps(self, context: str, exten: str) -> list[Step]:
        matching = [s for s in self.contexts[context] if s.exten == exten]
        if not matching:
            matching = [s for s in self.contexts[context] if pattern_matches(s.exten, exten)]
        return sorted(matching, key=lambda s: s.priority)


def _strip_comment(line: str) -> str:
    return re.sub(r"(?<!\\);.*$", "", line).strip()


def load_dialplan(path: Path) -> Dialplan:
    plan = Dialplan()
    context = ""
    exten, priority = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        if header := re.fullmatch(r"\[([^\]]+)\]", line):
            context = header[1]
            if context in ("general", "globals"):
                plan.settings[context] = {}
            else:
                plan.contexts[context] = []
            continue
        if context in plan.settings:
            key, _, value = line.partition("=")
            plan.settings[context][key.strip()] = value.strip()
            continue
        rule = re.fullmatch(r"(exten|same)\s*=>\s*(.*)", line)
        assert rule, f"{path.name}:{number}: not a dialplan line: {raw!r}"
        rest = rule[2]
        if rule[1] == "exten":
            exten, _, rest = rest.partition(",")
        prio_text, _, app_text = rest.partition(",")
        prio = re.fullmatch(r"(\d+|n)(?:\((\w+)\))?", prio_text.strip())
        assert prio, f"{path.name}:{number}: bad priority {prio_text!r}"
        priority = priority + 1 if prio[1] == "n" else int(prio[1])
        app, _, args = app_text.partition("(")
        plan.contexts[context].append(
            Step(exten.strip(), priority, prio[2], app.strip(), args.removesuffix(")"))
        )
    return plan


def pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk extension patterns: _ prefix, X Z N, [..] classes, `.` one or more, `!` any."""
    if not pattern.startswith("_"):
        return pattern == exten
    regex = ""
    for token in re.findall(r"\[[^\]]+\]|.", pattern[1:]):
        regex += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(
            token, token if token.startswith("[") else re.escape(token)
        )
    return re.fullmatch(regex, exten) is not None


# ---------------------------------------------------------------- a small dialplan runner


def _close(text: str, start: int) -> int:
    """Index of the `}` or `]` closing the bracket opened just before `start`."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] in "{[":
            depth += 1
        elif text[i] in "}]":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced brackets in {text!r}")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """${VAR}, ${VAR:offset[:length]}, ${IF(cond?a:b)} and $[a = b] — what this dialplan uses."""
    out = ""
    i = 0
    while i < len(text):
        if text.startswith("${", i) or text.startswith("$[", i):
            end = _close(text, i + 2)
            inner = expand(text[i + 2 : end], variables)
            if text[i + 1] == "[":
                out += _expression(inner)
            elif inner.startswith("IF(") and inner.endswith(")"):
                cond, _, choices = inner[3:-1].partition("?")
                yes, _, no = choices.partition(":")
                out += yes if cond.strip() not in ("", "0") else no
            elif substring := re.fullmatch(r"(\w+):(-?\d+)(?::(-?\d+))?", inner):
                value = variables.get(substring[1], "")[int(substring[2]) :]
                if substring[3] is not None:  # a negative length leaves that many off the end
                    length = int(substring[3])
                    value = value[:length] if length < 0 else value[: max(0, length)]
                out += value
            else:
                out += variables.get(inner, "")
            i = end + 1
        else:
            out += text[i]
            i += 1
    return out


def _expression(expr: str) -> str:
    compare = re.fullmatch(r'\s*"?(.*?)"?\s*(!?=)\s*"?(.*?)"?\s*', expr)
    assert compare, f"unsupported expression $[{expr}]"
    return "1" if (compare[1] == compare[3]) == (compare[2] == "=") else "0"


def _goto_target(parts: list[str], context: str, exten: str) -> tuple[str, str, str]:
    """Goto(label) / Goto(exten,label) / Goto(context,exten,label)."""
    if len(parts) == 1:
        return context, exten, parts[0]
    if len(parts) == 2:
        return context, parts[0], parts[1]
    return parts[0], parts[1], parts[2]


def _resolves(plan: Dialplan, context: str, exten: str, label: str) -> bool:
    return any(label in (s.label, str(s.priority)) for s in plan.steps(context, exten))


@dataclass
class Run:
    """Applications executed, with their expanded arguments, and the variables at the end."""

    apps: list[tuple[str, str]]
    variables: dict[str, str]

    def names(self) -> list[str]:
        return [app for app, _ in self.apps]

    def ran(self, app: str, args: str | None = None) -> bool:
        return any(a == app and (args is None or g == args) for a, g in self.apps)


def run_dialplan(
    plan: Dialplan,
    context: str,
    exten: str,
    variables: Mapping[str, str],
    effects: Mapping[str, Mapping[str, str]] | None = None,
) -> Run:
    """Walk the dialplan like Asterisk would; `effects[app]` are the variables an app sets."""
    state = {**plan.settings.get("globals", {}), **variables, "EXTEN": exten}
    effects = effects or {}
    apps: list[tuple[str, str]] = []
    steps = plan.steps(context, exten)
    index = 0
    for _ in range(200):
        if index >= len(steps):
            break
        step = steps[index]
        args = expand(step.args, state)
        apps.append((step.app, args))
        state.update(effects.get(step.app, {}))
        target: tuple[str, str, str] | None = None
        if step.app == "Set":
            name, _, value = args.partition("=")
            state[name] = value
        elif step.app == "GotoIf":
            cond, _, labels = args.partition("?")
            yes, _, no = labels.partition(":")
            chosen = yes if cond.strip() not in ("", "0") else no
            if chosen:
                target = (context, exten, chosen)
        elif step.app == "Goto":
            target = _goto_target(args.split(","), context, exten)
        elif step.app in ("Hangup", "Busy", "Congestion"):
            break
        if target is None:
            index += 1
            continue
        context, exten = target[0], target[1]
        state["EXTEN"] = exten
        steps = plan.steps(context, exten)
        index = next(
            i for i, s in enumerate(steps) if s.label == target[2] or str(s.priority) == target[2]
        )
    else:
        pytest.fail(f"dialplan loops: {apps[-5:]}")
    return Run(apps, state)


@pytest.fixture
def dialplan() -> Dialplan:
    return load_dialplan(CONF / "extensions.conf")


def originate(**overrides: str) -> dict[str, str]:
    """The variables of a dialer Originate, as the contract lists them."""
    variables = {
        "ATTEMPT_ID": "n1-c7-a42",
        "CAMPAIGN_ID": "c7",
        "LEAD_ID": "L001",
        "USE_AMD": "0",
        "RECORD": "1",
        "DIALER_AGI": "agi://10.0.0.5:4573",
        "CHANNEL": "Local/15550001@debtor-sim-00000000;1",
    }
    assert set(variables) - {"CHANNEL"} == ORIGINATE_VARIABLES
    return {**variables, **overrides}


DIAL_ROUTE = {
    "ROUTE": "dial",
    "TARGET_CHANNEL": "Local/agent1@agents",
    "TARGET_AGENT": "agent1",
    "RECORDING_FILE": "/var/spool/asterisk/monitor/c7/n1-c7-a42.wav",
}
# An agent whose phone is nailed up waits in its conference (docs/agents-web.md).
BRIDGE_ROUTE = {
    "ROUTE": "bridge",
    "TARGET_AGENT": "agent1",
    "TARGET_BRIDGE": "agent-agent1",
    "RECORDING_FILE": "/var/spool/asterisk/monitor/c7/n1-c7-a42.wav",
}


# ---------------------------------------------------------------- dialer-connect


def test_an_answered_call_routed_to_an_agent_is_recorded_and_dialled(dialplan: Dialplan) -> None:
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(), {"AGI": DIAL_ROUTE})
    assert run.ran("AGI", "agi://10.0.0.5:4573/connect?attempt=n1-c7-a42&campaign=c7")
    assert not run.ran("AMD"), "AMD only runs when the campaign asks for it"
    # Two parties: the debtor (r) and the agent (t) each in a file beside the mixed one.
    stem = DIAL_ROUTE["RECORDING_FILE"].removesuffix(".wav")
    assert run.ran("MixMonitor", f"{stem}.wav,br({stem}-in.wav)t({stem}-out.wav)")
    assert run.ran("Dial", "Local/agent1@agents,20")
    names = run.names()
    assert names.index("AGI") < names.index("MixMonitor") < names.index("Dial")
    assert names[-1] == "Hangup"


def test_without_record_there_is_no_mixmonitor(dialplan: Dialplan) -> None:
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(RECORD="0"), {"AGI": DIAL_ROUTE})
    assert not run.ran("MixMonitor")
    assert run.ran("Dial")


def test_a_machine_is_hung_up_before_the_dialer_is_asked(dialplan: Dialplan) -> None:
    amd = {"AMD": {"AMDSTATUS": "MACHINE", "AMDCAUSE": "LONGGREETING-1500-1500"}}
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(USE_AMD="1"), amd)
    assert run.ran("AMD")
    assert not run.ran("AGI")
    assert run.names()[-1] == "Hangup"


@pytest.mark.parametrize("status", ["HUMAN", "NOTSURE"])
def test_a_human_or_unsure_amd_result_goes_to_the_dialer(dialplan: Dialplan, status: str) -> None:
    effects = {"AMD": {"AMDSTATUS": status}, "AGI": DIAL_ROUTE}
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(USE_AMD="1"), effects)
    assert run.ran("AMD") and run.ran("AGI") and run.ran("Dial")


def test_no_agent_in_time_plays_the_safe_harbour_message(dialplan: Dialplan) -> None:
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(), {"AGI": {"ROUTE": "abandon"}})
    assert run.ran("Playback", "dialer/safe-harbour")
    assert not run.ran("Dial")
    assert run.names()[-1] == "Hangup"


@pytest.mark.parametrize("agi_result", [{"ROUTE": "hangup"}, {"AGISTATUS": "FAILURE"}, {}])
def test_hangup_route_or_a_failed_agi_hangs_up(
    dialplan: Dialplan, agi_result: dict[str, str]
) -> None:
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(), {"AGI": agi_result})
    assert not run.ran("Dial") and not run.ran("Playback") and not run.ran("MixMonitor")
    assert run.names()[-1] == "Hangup"


def test_a_call_without_dialer_agi_uses_the_default_server(dialplan: Dialplan) -> None:
    variables = originate()
    del variables["DIALER_AGI"]
    run = run_dialplan(dialplan, "dialer-connect", "s", variables)
    default = dialplan.settings["globals"]["DIALER_AGI_DEFAULT"]
    assert default.startswith("agi://")
    assert run.ran("AGI", f"{default}/connect?attempt=n1-c7-a42&campaign=c7")


def test_every_goto_lands_on_an_existing_label(dialplan: Dialplan) -> None:
    checked = 0
    for context, steps in dialplan.contexts.items():
        for step in steps:
            if step.app == "GotoIf":
                labels = re.split(r"[:]", step.args.partition("?")[2])
                targets = [(context, step.exten, label) for label in labels if label]
            elif step.app == "Goto":
                targets = [_goto_target(step.args.split(","), context, step.exten)]
            else:
                continue
            for ctx, exten, label in targets:
                # Goto(debtor-behaviour,${EXTEN:-1},1) must work for every last digit.
                extens = [str(d) for d in range(10)] if "${" in exten else [exten]
                for candidate in extens:
                    assert _resolves(dialplan, ctx, candidate, label), (context, step)
                    checked += 1
    assert checked > 10


def test_the_h_extension_logs_cause_and_dial_status(dialplan: Dialplan) -> None:
    [step] = dialplan.steps("dialer-connect", "h")
    assert step.app == "NoOp"
    assert "${HANGUPCAUSE}" in step.args and "${DIALSTATUS}" in step.args


def test_every_variable_dialer_connect_reads_is_set_by_someone(dialplan: Dialplan) -> None:
    steps = dialplan.contexts["dialer-connect"]
    text = " ".join(s.args for s in steps)
    read = set(re.findall(r"\$\{(\w+)(?=[}:])", text))  # variables, not IF() or CONFBRIDGE_INFO()
    set_here = {s.args.partition("=")[0] for s in steps if s.app == "Set"}
    globals_ = set(dialplan.settings["globals"])
    agi_sets = set(DIAL_ROUTE) | set(BRIDGE_ROUTE)
    unknown = read - ORIGINATE_VARIABLES - ASTERISK_VARIABLES - agi_sets - set_here - globals_
    assert unknown == set(), "a typo, or a variable nobody sets"
    assert ORIGINATE_VARIABLES - {"LEAD_ID"} <= read, "every Originate variable with a job is used"


@dataclass
class OneDecisionRouter:
    decision: RouteDecision
    seen: list[AnsweredCall] = field(default_factory=list)

    async def route_answered_call(self, call: AnsweredCall) -> RouteDecision:
        self.seen.append(call)
        return self.decision

    async def call_lost(self, call: AnsweredCall, decision: RouteDecision) -> None:
        raise AssertionError("the debtor did not hang up")


@pytest.mark.parametrize(
    "decision",
    [
        RouteDecision("dial", "Local/agent1@agents", "agent1", "/var/spool/asterisk/monitor/x.wav"),
        RouteDecision("abandon"),
        RouteDecision("hangup"),
    ],
    ids=lambda d: d.route,
)
async def test_the_agi_url_reaches_the_connect_script_and_its_variables_drive_the_dialplan(
    dialplan: Dialplan, decision: RouteDecision
) -> None:
    """Run the real `connect` script from the dialplan's AGI() line, then the dialplan after it."""
    router = OneDecisionRouter(decision)
    async with FastAgiServer({"connect": make_connect_script(router)}, port=0) as server:
        variables = originate(DIALER_AGI=f"agi://127.0.0.1:{server.port}")
        before_agi = run_dialplan(dialplan, "dialer-connect", "s", variables)
        agi_url = next(args for app, args in before_agi.apps if app == "AGI")
        script, params = parse_network_script(agi_url.split("/", 3)[3])
        assert script == "connect"
        assert dict(params) == {"attempt": variables["ATTEMPT_ID"], "campaign": "c7"}
        channel = FakeChannel(variables={"AMDSTATUS": "HUMAN"})
        async with asyncio.timeout(5):
            outcome = await run_agi(agi_url, channel)
    assert outcome.status == "SUCCESS"
    assert [(c.attempt_id, c.campaign_id) for c in router.seen] == [
        (variables["ATTEMPT_ID"], variables["CAMPAIGN_ID"])
    ]
    assert set(channel.variables) - {"AMDSTATUS"} <= set(DIAL_ROUTE)
    after = run_dialplan(
        dialplan, "dialer-connect", "s", variables, {"AGI": dict(channel.variables)}
    )
    assert after.ran("Dial", f"{decision.target_channel},20") == (decision.route == "dial")
    assert after.ran("Playback", "dialer/safe-harbour") == (decision.route == "abandon")
    assert after.names()[-1] == "Hangup"


# ---------------------------------------------------------------- lab contexts


def test_lab_agents_answer_and_stay_on_the_line(dialplan: Dialplan) -> None:
    for agent in ("agent1", "7001"):
        run = run_dialplan(dialplan, "agents", agent, {})
        names = run.names()
        assert "Answer" in names and "Wait" in names
        assert names.index("Answer") < names.index("Wait")
        assert run.variables["AGENT_ID"] == agent


@pytest.mark.parametrize(
    ("number", "answers", "ends_with"),
    [
        ("15550001", True, ("Hangup", "16")),
        ("15550002", False, ("Busy", "10")),
        ("15550003", False, ("Wait", "45")),
        ("15550004", True, ("Hangup", "16")),
        ("15550005", False, ("Congestion", "10")),
        ("15550006", False, ("Hangup", "19")),
        ("15550007", True, ("Hangup", "16")),
        ("15550009", True, ("Hangup", "16")),
        ("15550100", False, ("Hangup", "1")),
    ],
)
def test_debtor_sim_behaves_by_the_last_digit(
    dialplan: Dialplan, number: str, answers: bool, ends_with: tuple[str, str]
) -> None:
    run = run_dialplan(dialplan, "debtor-sim", number, {"TALK_SECS": ""})
    assert run.variables["DEBTOR_NUMBER"] == number
    assert ("Answer" in run.names()) == answers
    assert run.apps[-1] == ends_with


def test_the_answering_machine_talks_long_and_the_short_call_does_not_wait(
    dialplan: Dialplan,
) -> None:
    machine = run_dialplan(dialplan, "debtor-sim", "15550004", {})
    assert any(args.endswith("/machine") for app, args in machine.apps if app == "Playback")
    short = run_dialplan(dialplan, "debtor-sim", "15550007", {})
    after_answer = short.names()[short.names().index("Answer") :]
    assert "Wait" not in after_answer
    human = run_dialplan(dialplan, "debtor-sim", "15550001", {"TALK_SECS": "3"})
    assert ("Wait", "3") in human.apps


# ---------------------------------------------------------------- manager.conf, amd.conf, pjsip


def load_ini(path: Path) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in path.read_text().splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        if header := re.fullmatch(r"\[([^\]]+)\](\(.*\))?", line):
            current = sections.setdefault(header[1], {})
            continue
        assert current is not None, f"{path.name}: {raw!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not `key = value`: {raw!r}"
        current[key.strip()] = value.strip()
    return sections


def test_manager_conf_lets_the_dialer_in_on_loopback_only() -> None:
    conf = load_ini(CONF / "manager.conf")
    assert conf["general"]["enabled"] == "yes"
    assert conf["general"]["bindaddr"] == "127.0.0.1"
    user = conf["dialer"]
    assert "CHANGE" in user["secret"].upper(), "the shipped secret must say it is a placeholder"
    assert user["permit"].startswith("127.0.0.1/")
    assert user["deny"] == "0.0.0.0/0.0.0.0"


def test_manager_conf_grants_the_actions_the_dialer_sends() -> None:
    write = set(load_ini(CONF / "manager.conf")["dialer"]["write"].split(","))
    for action, classes in ACTION_CLASSES.items():
        assert write & set(classes), f"{action} needs one of {sorted(classes)}"
    # and nothing more: a class the dialer does not use is a door left open
    assert write == set(required_write_classes())


def test_manager_conf_lets_the_dialer_read_every_event_it_acts_on_as_asterisk_sent_it(
    traces_dir: Path,
) -> None:
    read = set(load_ini(CONF / "manager.conf")["dialer"]["read"].split(","))
    seen: dict[str, str] = {}
    for path in traces_dir.glob("ami_*.log"):
        for msg in ami_messages(path):
            if "Event" in msg and "," in msg.get("Privilege", ""):
                seen[msg["Event"]] = msg["Privilege"].split(",")[0]
    # The class each event the dialer acts on came with, on the real Asterisk, is the one the
    # check-config table names and the one manager.conf grants.
    for event, cls in EVENT_CLASSES.items():
        if event in seen:
            assert seen[event] == cls, event
        assert cls in read, event
    assert {"OriginateResponse", "VarSet", "Hangup", "Newchannel"} <= set(seen)


def test_amd_conf_matches_what_the_captured_amd_reported(traces_dir: Path) -> None:
    amd = {k: int(v) for k, v in load_ini(CONF / "amd.conf")["general"].items()}
    causes = [
        msg["Value"]
        for path in traces_dir.glob("ami_*.log")
        for msg in ami_messages(path)
        if msg.get("Event") == "VarSet" and msg.get("Variable") == "AMDCAUSE"
    ]
    assert causes, "the captures hold AMD results"
    for cause in causes:
        kind, _, limit = cause.rsplit("-", 2)
        setting = {"HUMAN": "after_greeting_silence", "LONGGREETING": "greeting"}[kind]
        assert amd[setting] == int(limit), cause
    assert amd["total_analysis_time"] > amd["initial_silence"]


def test_pjsip_conf_loads_with_typed_sections() -> None:
    conf = load_ini(CONF / "pjsip.conf")
    assert conf["transport-udp"]["type"] == "transport"
    assert all("type" in section for section in conf.values())


def test_readme_says_where_each_file_goes() -> None:
    readme = (CONF / "README.md").read_text()
    for name in ("extensions.conf", "manager.conf", "amd.conf", "pjsip.conf"):
        assert f"/etc/asterisk/{name}" in readme
    assert "safe-harbour" in readme
