"""AMI codec: framing and parsing of real Asterisk 20.20.1 bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.ami.protocol import (
    AmiParser,
    Banner,
    FrameError,
    Message,
    encode,
    encode_action,
    parse_frames,
)


def _raw(traces_dir: Path, name: str) -> bytes:
    return (traces_dir / "raw" / name).read_bytes()


def test_every_captured_server_stream_parses_without_errors(traces_dir: Path) -> None:
    for path in sorted((traces_dir / "raw").glob("*.s2c.raw")):
        frames, leftover = parse_frames(path.read_bytes())
        assert leftover == b"", path.name
        assert not [f for f in frames if isinstance(f, FrameError)], path.name
        assert isinstance(frames[0], Banner) and frames[0].version == "9.0.0"


def test_input_split_at_every_byte_offset_gives_the_same_messages(traces_dir: Path) -> None:
    data = _raw(traces_dir, "ami_originate_busy.s2c.raw")
    expected, _ = parse_frames(data)
    for cut in range(len(data)):
        parser = AmiParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == expected, cut


def test_banner_has_no_blank_line_and_login_response_follows(traces_dir: Path) -> None:
    frames, _ = parse_frames(_raw(traces_dir, "ami_login.s2c.raw"))
    assert frames[0] == Banner("9.0.0")
    login = frames[1]
    assert isinstance(login, Message)
    assert login.response == "Success"
    assert login.get("Message") == "Authentication accepted"
    assert login.action_id == "login-1"


def test_repeated_keys_are_kept_in_wire_order(traces_dir: Path) -> None:
    frames, _ = parse_frames(_raw(traces_dir, "ami_originate_answered.c2s.raw"))
    originate = next(f for f in frames if isinstance(f, Message) and f.action == "Originate")
    assert originate.get_all("Variable") == [
        "CAMPAIGN_ID=camp42",
        "LEAD_ID=L001",
        "RECORD=1",
        "TALK_SECS=6",
    ]


def test_malformed_frame_is_reported_and_the_next_message_still_parses() -> None:
    data = b"Event: Newstate\r\nthis line has no colon\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n"
    frames, leftover = parse_frames(data)
    assert leftover == b""
    assert isinstance(frames[0], FrameError) and "no colon" in frames[0].raw
    assert isinstance(frames[1], Message) and frames[1].get("Cause") == "16"


def test_truncated_frame_waits_for_the_rest() -> None:
    parser = AmiParser()
    assert parser.feed(b"Event: Hangup\r\nCause: 1") == []
    assert parser.pending
    [msg] = parser.feed(b"6\r\n\r\n")
    assert isinstance(msg, Message) and msg.get("Cause") == "16"


def test_endless_frame_is_discarded_instead_of_growing_memory() -> None:
    parser = AmiParser(max_buffer=1000)
    frames = parser.feed(b"Event: X\r\nData: " + b"a" * 2000)
    assert isinstance(frames[-1], FrameError)
    assert parser.pending == b""


def test_empty_value_lines_are_accepted() -> None:
    [msg], _ = parse_frames(b"Event: Newchannel\r\nAccountCode: \r\nLanguage:\r\n\r\n")
    assert isinstance(msg, Message)
    assert msg.get("AccountCode") == "" and msg.get("Language") == ""


def test_encoded_action_round_trips_and_refuses_header_injection() -> None:
    data = encode_action("Originate", "a1", [("Variable", "A=1"), ("Variable", "B=2")])
    assert data.startswith(b"Action: Originate\r\nActionID: a1\r\n") and data.endswith(b"\r\n\r\n")
    [msg], _ = parse_frames(data)
    assert isinstance(msg, Message) and msg.get_all("Variable") == ["A=1", "B=2"]
    with pytest.raises(ValueError, match="line break"):
        encode({"CallerID": "Evil\r\nAction: Hangup"})


def test_utf8_names_survive() -> None:
    [msg], _ = parse_frames(encode({"Event": "Newchannel", "CallerIDName": "王小明"}))
    assert isinstance(msg, Message) and msg.get("CallerIDName") == "王小明"
