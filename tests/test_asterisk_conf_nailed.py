"""The shipped dialplan's nailed-up agent contexts, walked without an Asterisk: dialer-agent,
dialer-spy and dialer-connect's ROUTE=bridge (the real thing: tests/test_asterisk_nailed.py)."""

from __future__ import annotations

import pytest

from tests.test_asterisk_conf import (
    BRIDGE_ROUTE,
    CONF,
    Dialplan,
    load_dialplan,
    originate,
    run_dialplan,
)

LOGIN = {"AGENT_ID": "agent1", "AGENT_CONF": "agent-agent1", "DIALER_NODE": "node1"}
# CONFBRIDGE_INFO(marked,...) as the runner sees a function: its call, with the value it gives.
AGENT_THERE = {"CONFBRIDGE_INFO(marked,agent-agent1)": "1"}
AGENT_GONE = {"CONFBRIDGE_INFO(marked,agent-agent1)": "0"}


@pytest.fixture
def dialplan() -> Dialplan:
    return load_dialplan(CONF / "extensions.conf")


def test_a_login_answers_and_waits_in_the_agents_conference(dialplan: Dialplan) -> None:
    run = run_dialplan(dialplan, "dialer-agent", "s", LOGIN)
    assert run.names()[-3:] == ["Answer", "ConfBridge", "Hangup"]
    assert run.ran("ConfBridge", "agent-agent1,dialer_agent_bridge,dialer_agent")


@pytest.mark.parametrize("missing", ["AGENT_ID", "AGENT_CONF"])
def test_a_login_without_its_ids_is_refused(dialplan: Dialplan, missing: str) -> None:
    run = run_dialplan(dialplan, "dialer-agent", "s", {**LOGIN, missing: ""})
    assert not run.ran("Answer") and not run.ran("ConfBridge")
    assert run.apps[-1] == ("Hangup", "21")


def test_a_bridge_route_records_and_joins_the_agents_conference(dialplan: Dialplan) -> None:
    run = run_dialplan(
        dialplan, "dialer-connect", "s", originate(**AGENT_THERE), {"AGI": BRIDGE_ROUTE}
    )
    stem = BRIDGE_ROUTE["RECORDING_FILE"].removesuffix(".wav")
    assert run.ran("MixMonitor", f"{stem}.wav,br({stem}-in.wav)t({stem}-out.wav)")
    assert run.ran("ConfBridge", "agent-agent1,dialer_agent_bridge,dialer_debtor")
    assert not run.ran("Dial") and not run.ran("Playback")
    assert run.names().index("MixMonitor") < run.names().index("ConfBridge")
    no_record = run_dialplan(
        dialplan,
        "dialer-connect",
        "s",
        originate(RECORD="0", **AGENT_THERE),
        {"AGI": BRIDGE_ROUTE},
    )
    assert no_record.ran("ConfBridge") and not no_record.ran("MixMonitor")


@pytest.mark.parametrize(
    "route", [BRIDGE_ROUTE, {**BRIDGE_ROUTE, "TARGET_BRIDGE": ""}], ids=["agent gone", "no bridge"]
)
def test_a_bridge_route_without_its_agent_is_abandoned(
    dialplan: Dialplan, route: dict[str, str]
) -> None:
    run = run_dialplan(dialplan, "dialer-connect", "s", originate(**AGENT_GONE), {"AGI": route})
    assert not run.ran("ConfBridge") and not run.ran("MixMonitor")
    assert run.variables["ROUTE"] == "abandon"
    assert run.ran("Playback", "dialer/safe-harbour")
    assert run.names()[-1] == "Hangup"


@pytest.mark.parametrize(
    ("mode", "options"), [("listen", "qESu"), ("whisper", "qESuw"), ("barge", "qESuB")]
)
def test_each_spy_mode_runs_chanspy_on_the_target_with_its_options(
    dialplan: Dialplan, mode: str, options: str
) -> None:
    target = "PJSIP/1001-0000002a"
    run = run_dialplan(dialplan, "dialer-spy", "s", {"SPY_TARGET": target, "SPY_MODE": mode})
    assert [args for app, args in run.apps if app == "ChanSpy"] == [f"{target},{options}"]
    assert run.names()[-1] == "Hangup"


@pytest.mark.parametrize(
    "variables",
    [{"SPY_TARGET": "", "SPY_MODE": "listen"}, {"SPY_TARGET": "PJSIP/1001-1", "SPY_MODE": "x"}],
    ids=["no target", "unknown mode"],
)
def test_a_spy_call_without_target_or_mode_is_refused(
    dialplan: Dialplan, variables: dict[str, str]
) -> None:
    run = run_dialplan(dialplan, "dialer-spy", "s", variables)
    assert not run.ran("ChanSpy")
    assert run.apps[-1] == ("Hangup", "21")


# ---------------------------------------------------------------- dialer-transfer

TRANSFER = {"TRANSFER_TO": "PJSIP/1000", "CHANNEL": "PJSIP/trunk-0000002a"}


def test_a_transfer_logs_and_dials_the_supervisor_for_thirty_seconds(dialplan: Dialplan) -> None:
    run = run_dialplan(dialplan, "dialer-transfer", "s", TRANSFER)
    assert run.apps[0] == ("NoOp", "DIALER-TRANSFER PJSIP/trunk-0000002a to=PJSIP/1000")
    assert run.ran("Dial", "PJSIP/1000,30")
    assert run.names().index("Dial") == 2


@pytest.mark.parametrize("status", ["NOANSWER", "BUSY", "CHANUNAVAIL", "CONGESTION"])
def test_a_supervisor_who_does_not_answer_leaves_the_debtor_the_safe_harbour_message(
    dialplan: Dialplan, status: str
) -> None:
    """Dial() returns to the dialplan only then: after a conversation (DIALSTATUS=ANSWER) the
    call ends with it (no `g` option; seen on Asterisk 20.20.1 when the supervisor hangs up)."""
    run = run_dialplan(dialplan, "dialer-transfer", "s", TRANSFER, {"Dial": {"DIALSTATUS": status}})
    names = run.names()
    assert names.index("Dial") < names.index("Playback")
    assert run.ran("Playback", "dialer/safe-harbour")
    assert run.apps[-1] == ("Hangup", "")


@pytest.mark.parametrize("to", ["", None], ids=["empty", "never set"])
def test_a_transfer_without_transfer_to_is_refused(dialplan: Dialplan, to: str | None) -> None:
    variables = {"CHANNEL": TRANSFER["CHANNEL"]} | ({} if to is None else {"TRANSFER_TO": to})
    run = run_dialplan(dialplan, "dialer-transfer", "s", variables)
    assert not run.ran("Dial") and not run.ran("Playback")
    assert run.apps[-1] == ("Hangup", "21")


def test_the_transfer_h_extension_logs_cause_and_dial_status(dialplan: Dialplan) -> None:
    [step] = dialplan.steps("dialer-transfer", "h")
    assert step.app == "NoOp" and step.args.startswith("DIALER-TRANSFER hangup ")
    assert "${HANGUPCAUSE}" in step.args and "${DIALSTATUS}" in step.args
