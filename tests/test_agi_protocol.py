"""The sans-I/O FastAGI core, specified on the bytes a real Asterisk 20.20.1 sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi import protocol
from agi.errors import AgiProtocolError
from agi.protocol import (
    AgiCommand,
    AgiEnvironment,
    AgiReply,
    AgiServerProtocol,
    HangupNotice,
    MalformedLine,
    parse_reply_line,
    split_lines,
    tokenize,
)

# ---------------------------------------------------------------- the capture, as data

_SESSION = re.compile(r"^===== FastAGI session #(\d+) \(scenario: (\S+)\)")
_LINE = re.compile(r"^\s*\d+\.\d+ (A>S|S>A|###) ?(.*)$")


@dataclass(frozen=True)
class CapturedSession:
    """One FastAGI session of the capture: the header lines and each command with its answer."""

    number: int
    scenario: str
    header: tuple[str, ...]  # agi_* lines and the closing empty line
    exchanges: tuple[tuple[str, tuple[str, ...]], ...]  # (command, lines Asterisk sent after it)

    def header_bytes(self) -> bytes:
        return "".join(f"{line}\n" for line in self.header).encode()

    def answer_bytes(self, index: int) -> bytes:
        return "".join(f"{line}\n" for line in self.exchanges[index][1]).encode()

    def header_value(self, key: str) -> str:
        for line in self.header:
            name, _, value = line.partition(": ")
            if name == key:
                return value
        raise KeyError(key)


def load_capture(traces_dir: Path) -> list[CapturedSession]:
    sessions: list[CapturedSession] = []
    current: dict[str, object] | None = None
    header: list[str] = []
    exchanges: list[tuple[str, list[str]]] = []

    def flush() -> None:
        if current is not None:
            sessions.append(
                CapturedSession(
                    number=int(str(current["number"])),
                    scenario=str(current["scenario"]),
                    header=tuple(header),
                    exchanges=tuple((cmd, tuple(lines)) for cmd, lines in exchanges),
                )
            )

    for raw in (traces_dir / "fastagi_connect.log").read_text().splitlines():
        start = _SESSION.match(raw)
        if start:
            flush()
            current = {"number": start[1], "scenario": start[2]}
            header, exchanges = [], []
            continue
        line = _LINE.match(raw)
        if line is None or line[1] == "###":
            continue
        if line[1] == "S>A":
            exchanges.append((line[2], []))
        elif exchanges:
            exchanges[-1][1].append(line[2])
        else:
            header.append(line[2])
    flush()
    return sessions


@pytest.fixture
def capture(traces_dir: Path) -> list[CapturedSession]:
    sessions = load_capture(traces_dir)
    assert len(sessions) == 8, "the capture holds eight FastAGI sessions"
    return sessions


# ---------------------------------------------------------------- replaying the capture


def replay(
    session: CapturedSession, split_at: int | None = None, bytewise: bool = False
) -> list[list[object]]:
    """Drive the core through a captured session; events per segment (header, then each answer).

    The A>S stream is cut once at `split_at` (a byte offset into the whole stream), or fed one
    byte at a time; every command is sent when the log shows it and must come out byte-exact.
    """
    core = AgiServerProtocol()
    segments = [session.header_bytes()] + [
        session.answer_bytes(i) for i in range(len(session.exchanges))
    ]
    results: list[list[object]] = []
    offset = 0
    for index, segment in enumerate(segments):
        if index > 0:
            command = session.exchanges[index - 1][0]
            core.send_command(command)
            assert core.data_to_send() == command.encode() + b"\n"
        if bytewise:
            pieces = [segment[i : i + 1] for i in range(len(segment))]
        elif split_at is not None and offset <= split_at < offset + len(segment):
            cut = split_at - offset
            pieces = [segment[:cut], segment[cut:]]
        else:
            pieces = [segment]
        events: list[object] = []
        for piece in pieces:
            core.receive_data(piece)
            events.extend(core.events_received())
        results.append(events)
        offset += len(segment)
    return results


def expected_events(session: CapturedSession) -> list[list[object]]:
    """What the log says each segment means: the environment, then HANGUP notices and one reply."""
    header = [line.partition(": ") for line in session.header[:-1]]
    expected: list[list[object]] = [[AgiEnvironment.from_pairs((k, v) for k, _, v in header)]]
    for _command, lines in session.exchanges:
        notices: list[object] = [HangupNotice() for line in lines if line == "HANGUP"]
        reply_lines = tuple(line for line in lines if line != "HANGUP")
        expected.append([*notices, reply_lines])
    return expected


def _normalise(events: list[list[object]]) -> list[list[object]]:
    # Replies compare by the lines they were parsed from: the log is the ground truth.
    return [[e.lines if isinstance(e, AgiReply) else e for e in seg] for seg in events]


def test_every_captured_session_replays_to_the_logged_events(
    capture: list[CapturedSession],
) -> None:
    for session in capture:
        assert _normalise(replay(session)) == expected_events(session), session.scenario


def test_framing_survives_a_cut_at_every_byte_offset(capture: list[CapturedSession]) -> None:
    for session in capture:
        whole = replay(session)
        total = len(session.header_bytes()) + sum(
            len(session.answer_bytes(i)) for i in range(len(session.exchanges))
        )
        for split_at in range(total + 1):
            assert replay(session, split_at=split_at) == whole, (session.number, split_at)
        assert replay(session, bytewise=True) == whole


def test_environment_is_typed_and_keeps_the_raw_header(capture: list[CapturedSession]) -> None:
    for session in capture:
        [[env], *_] = replay(session)
        assert isinstance(env, AgiEnvironment)
        request = session.header_value("agi_request")
        assert env.request == request
        assert env.script == "connect"
        assert dict(env.params) == dict(
            pair.split("=") for pair in request.split("?", 1)[1].split("&")
        )
        assert env.channel == session.header_value("agi_channel")
        assert env.uniqueid == session.header_value("agi_uniqueid")
        assert env.type == "Local"
        assert env.version == "20.20.1"
        assert env.network is True
        assert env.accountcode == "", "an empty header value is an empty string, not missing"
        assert list(env.raw) == [line.partition(":")[0] for line in session.header[:-1]]


def test_replies_carry_result_data_and_endpos(capture: list[CapturedSession]) -> None:
    for session in capture:
        [[env], *answers] = replay(session)
        assert isinstance(env, AgiEnvironment)
        for (command, lines), events in zip(session.exchanges, answers, strict=True):
            reply = events[-1]
            assert isinstance(reply, AgiReply)
            if command == "GET VARIABLE CAMPAIGN_ID":
                assert (reply.result, reply.data) == (1, env.params["campaign"])
            elif command == "GET VARIABLE NO_SUCH_VARIABLE":
                assert (reply.result, reply.data) == (0, None)
            elif command.startswith("GET FULL VARIABLE"):
                assert reply.data is not None
                assert reply.data.split("|") == [env.callerid, env.channel, env.uniqueid]
            elif command == "CHANNEL STATUS" and reply.code == 200:
                assert reply.result == 6, "the answered channel is Up"
            elif command.startswith("STREAM FILE /var/lib/asterisk/sounds/sim/beep"):
                # A 500 ms beep at 8 kHz ends at sample 4000.
                assert (reply.result, reply.endpos, reply.data) == (0, 500 * 8, None)
            elif command.startswith("STREAM FILE no_such"):
                assert (reply.result, reply.endpos) == (-1, 0)
            elif command.startswith("EXEC NoSuchApplication"):
                assert reply.result == -2
            elif command == "FOO BAR":
                assert (reply.code, reply.message) == (510, "Invalid or unknown command")
            elif command == "GET VARIABLE":
                assert reply.code == 520
                assert reply.message == "Invalid command syntax.  Proper usage follows:"
                assert len(reply.usage) == 2
                assert reply.usage[1] == "Example return code: 200 result=1 (testvariable)"
            reply_lines = [line for line in lines if line != "HANGUP"]
            assert bytes(reply) == "".join(f"{line}\n" for line in reply_lines).encode()


def test_hangup_notice_arrives_before_the_reply_to_the_next_command(
    capture: list[CapturedSession],
) -> None:
    by_scenario = {s.scenario: s for s in capture}
    for scenario in ("abandon_agi", "agi_hangup"):
        session = by_scenario[scenario]
        answers = replay(session)[1:]
        with_notice = [
            (cmd, events)
            for (cmd, _), events in zip(session.exchanges, answers, strict=True)
            if any(isinstance(e, HangupNotice) for e in events)
        ]
        [(command, events)] = with_notice
        assert command == "GET VARIABLE CAMPAIGN_ID"
        assert isinstance(events[0], HangupNotice)
        reply = events[1]
        assert isinstance(reply, AgiReply)
        assert reply.data == "camp42", "variables stay readable on a dead channel"
    dead = replay(by_scenario["abandon_agi"])[-1][-1]
    assert isinstance(dead, AgiReply)
    assert dead.code == 511


# ---------------------------------------------------------------- building commands


def _rebuild(line: str) -> AgiCommand:
    """Rebuild a captured command with the builder a script would call."""
    words = tokenize(line)
    verb = " ".join(words[:3]).upper()
    if verb.startswith("GET FULL VARIABLE"):
        return protocol.get_full_variable(words[3])
    head = " ".join(words[:2]).upper()
    if head == "GET VARIABLE":
        return protocol.get_variable(words[2])
    if head == "SET VARIABLE":
        return protocol.set_variable(words[2], words[3])
    if head == "STREAM FILE":
        return protocol.stream_file(words[2], words[3])
    if head == "CHANNEL STATUS":
        return protocol.channel_status()
    if words[0] == "VERBOSE":
        return protocol.verbose(words[1], int(words[2]))
    if words[0] == "EXEC":
        return protocol.exec_app(words[1], words[2] if len(words) > 2 else "")
    return {"NOOP": protocol.noop, "HANGUP": protocol.hangup, "ANSWER": protocol.answer}[words[0]]()


def test_builders_reproduce_every_captured_command_byte_for_byte(
    capture: list[CapturedSession],
) -> None:
    deliberate_mistakes = {"FOO BAR", "GET VARIABLE"}  # the capture sent these to provoke errors
    commands = {cmd for s in capture for cmd, _ in s.exchanges} - deliberate_mistakes
    assert len(commands) > 15
    for line in commands:
        assert bytes(_rebuild(line)) == line.encode() + b"\n"


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\0"), max_size=40))
def test_set_variable_value_reaches_asterisk_verbatim(value: str) -> None:
    words = tokenize(protocol.set_variable("NOTE", value).line)
    assert words == ["SET", "VARIABLE", "NOTE", value]


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\0"), min_size=1, max_size=40))
def test_exec_args_reach_the_application_as_one_argument(args: str) -> None:
    words = tokenize(protocol.exec_app("Playback", args).line)
    assert words[:2] == ["EXEC", "Playback"]
    assert words[2:] == [args]


def test_exec_joins_several_arguments_with_commas() -> None:
    assert protocol.exec_app("Wait", ["1", "x"]).line == "EXEC Wait 1,x"
    assert protocol.exec_app("Answer").line == "EXEC Answer"


def test_a_line_break_in_an_argument_is_refused_before_it_can_split_the_command() -> None:
    with pytest.raises(ValueError, match="line break"):
        protocol.set_variable("NOTE", "two\nlines")
    with pytest.raises(ValueError, match="variable name"):
        protocol.get_variable("TWO WORDS")
    with pytest.raises(ValueError, match="escape digits"):
        protocol.stream_file("beep", "A")


# ---------------------------------------------------------------- bad input and misuse


def _ready_core() -> AgiServerProtocol:
    core = AgiServerProtocol()
    core.receive_data(b"agi_network: yes\nagi_network_script: connect\n\n")
    [env] = core.events_received()
    assert isinstance(env, AgiEnvironment)
    return core


def test_malformed_lines_are_reported_and_the_session_goes_on() -> None:
    core = AgiServerProtocol()
    core.receive_data(b"agi_network: yes\nnot a header\nagi_network_script: connect?a=1\n\n")
    bad, env = core.events_received()
    assert isinstance(bad, MalformedLine)
    assert bad.line == "not a header"
    assert isinstance(env, AgiEnvironment)
    assert env.script == "connect"
    assert env.params["a"] == "1"

    core.receive_data(b"200 result=1\n")  # nobody asked
    [stray] = core.events_received()
    assert isinstance(stray, MalformedLine)
    assert "no command" in stray.reason

    core.send_command(protocol.noop())
    core.receive_data(b"200 garbage\n200 result=0\n")
    garbage, reply = core.events_received()
    assert isinstance(garbage, MalformedLine)
    assert isinstance(reply, AgiReply)
    assert reply.result == 0


def test_one_command_at_a_time() -> None:
    with pytest.raises(AgiProtocolError, match="environment"):
        AgiServerProtocol().send_command("NOOP")
    core = _ready_core()
    core.send_command(protocol.noop())
    with pytest.raises(AgiProtocolError, match="NOOP"):
        core.send_command(protocol.answer())


def test_a_line_without_end_beyond_the_limit_is_a_protocol_error() -> None:
    core = _ready_core()
    with pytest.raises(AgiProtocolError, match="framing"):
        core.receive_data(b"x" * (protocol.MAX_LINE_BYTES + 1))


def test_progress_line_is_not_taken_for_the_reply() -> None:
    core = _ready_core()
    core.send_command(protocol.exec_app("Dial", "PJSIP/agent1"))
    core.receive_data(b"100 result=0 Trying...\n")
    assert core.events_received() == []
    core.receive_data(b"200 result=0\n")
    [reply] = core.events_received()
    assert isinstance(reply, AgiReply)
    assert reply.code == 200


def test_reply_data_may_hold_parentheses_and_be_followed_by_endpos() -> None:
    reply = parse_reply_line("200 result=1 (a (b) c) endpos=16000")
    assert (reply.data, reply.endpos) == ("a (b) c", 16000)
    odd = parse_reply_line("200 result=0 unexpected words")
    assert (odd.result, odd.message) == (0, "result=0 unexpected words")
    built = AgiReply.build(200, result=1, data="x y", endpos=8)
    assert parse_reply_line(bytes(built).decode().rstrip("\n")) == built


def test_split_lines_returns_the_unterminated_rest() -> None:
    assert split_lines(b"200 result=1\r\nHANG") == (["200 result=1"], b"HANG")
