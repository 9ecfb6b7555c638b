"""`dialer doctor`: a fresh data folder is fine, an old schema is not; the trunk's contacts and
registration read from AMI replies (transcripts trimmed from a real Asterisk 20.20.1 running
asterisk-conf/ as shipped); the config checks of `asterisk check-config`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.ami.client import ActionIds, AmiClientCore, Reply, ReplyReady
from dialer.cli import main
from dialer.config import AmiConfig, AmiServerConfig, Config, DialingConfig, Secret
from dialer.doctor import (
    NEW_DATABASE,
    check_ami_server,
    check_configs,
    check_database,
    trunk_contacts_check,
    trunk_registration_check,
)
from dialer.store.db import create_store_engine, head_revision, upgrade
from sim.lab import AsteriskLab, free_port
from sim.sip.carrier import SippCarrier, sipp_available
from tests.conftest import REQUIRE_SERVICES

SHIPPED = Path(__file__).resolve().parent.parent / "asterisk-conf"
CARRIER_PASSWORD = "carrier-pa55word"
PJSIP = DialingConfig(channel_template="PJSIP/{number}@trunk", caller_id='"X" <2125550100>')
SERVER = AmiServerConfig(name="pbx1", secret=Secret("dialer-s3cret"))

# ---------------------------------------------------------------- replies, as Asterisk sends them

ENDPOINT_START = (
    "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n"
    "Message: Following are Events for each object associated with the Endpoint\r\n\r\n"
    "Event: EndpointDetail\r\nActionID: {id}\r\nObjectType: endpoint\r\nObjectName: trunk\r\n"
    "Aors: trunk\r\nContext: from-trunk\r\nTransport: transport-udp\r\n"
    "DeviceState: Unavailable\r\nActiveChannels: 0\r\n\r\n"
    "Event: AorDetail\r\nActionID: {id}\r\nObjectType: aor\r\nObjectName: trunk\r\n"
    "QualifyTimeout: 3.000000\r\nMaxContacts: 0\r\nContacts: trunk/sip:127.0.0.1:37976\r\n"
    "QualifyFrequency: 30\r\nTotalContacts: 1\r\nContactsRegistered: 0\r\nEndpointName: trunk\r\n\r\n"
)
CONTACT = (
    "Event: ContactStatusDetail\r\nActionID: {{id}}\r\nAOR: trunk\r\nURI: {uri}\r\n"
    "UserAgent: \r\nRegExpire: 0\r\nStatus: {status}\r\nRoundtripUsec: {rtt}\r\n"
    "EndpointName: trunk\r\nID: trunk@@2d44eb2a8aa1d0b2bfe386d090aa79de\r\n"
    "AuthenticateQualify: 0\r\nOutboundProxy: \r\nPath: \r\nQualifyFrequency: 0\r\n"
    "QualifyTimeout: 3.000\r\nQualify2xxOnly: 0\r\n\r\n"
)
ENDPOINT_END = (
    "Event: IdentifyDetail\r\nActionID: {id}\r\nObjectType: identify\r\n"
    "ObjectName: trunk-identify\r\nMatch: 127.0.0.1:37976/255.255.255.255\r\nEndpoint: trunk\r\n"
    "EndpointName: trunk\r\n\r\n"
    "Event: EndpointDetailComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 5\r\n\r\n"
)
NO_ENDPOINT = (
    "Response: Error\r\nActionID: {id}\r\nMessage: Unable to retrieve endpoint trunk\r\n\r\n"
)
DENIED = "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"
UNKNOWN_ACTION = "Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command\r\n\r\n"

REGISTRATIONS_NONE = (
    "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n"
    "Message: Following are Events for each Outbound registration\r\n\r\n"
    "Event: OutboundRegistrationDetailComplete\r\nActionID: {id}\r\nEventList: Complete\r\n"
    "ListItems: 0\r\nRegistered: 0\r\nNotRegistered: 0\r\n\r\n"
)
REGISTRATION = (
    "Response: Success\r\nActionID: {{id}}\r\nEventList: start\r\n"
    "Message: Following are Events for each Outbound registration\r\n\r\n"
    "Event: OutboundRegistrationDetail\r\nActionID: {{id}}\r\nObjectType: registration\r\n"
    "ObjectName: trunk-reg-0\r\nMaxRetries: 10000\r\nClientUri: sip:ACCOUNT@127.0.0.1:53776\r\n"
    "ServerUri: sip:127.0.0.1:53776\r\nRetryInterval: 60\r\nExpiration: 3600\r\n"
    "Transport: transport-udp\r\nLine: false\r\nContactUser: ACCOUNT\r\nEndpoint: \r\n"
    "OutboundAuth: trunk-oauth\r\nStatus: {status}\r\nNextReg: 0\r\n\r\n"
    "Event: AuthDetail\r\nActionID: {{id}}\r\nObjectType: auth\r\nObjectName: trunk-oauth\r\n"
    "Username: ACCOUNT\r\nRealm: \r\nAuthType: userpass\r\nPassword: " + CARRIER_PASSWORD + "\r\n"
    "\r\n"
    "Event: OutboundRegistrationDetailComplete\r\nActionID: {{id}}\r\nEventList: Complete\r\n"
    "ListItems: 1\r\nRegistered: 0\r\nNotRegistered: 1\r\n\r\n"
)


def endpoint_reply(*contacts: tuple[str, str]) -> str:
    """A PJSIPShowEndpoint reply for `trunk` with one ContactStatusDetail per (status, rtt)."""
    return (
        ENDPOINT_START
        + "".join(
            CONTACT.format(uri=f"sip:127.0.0.1:{37976 + i}", status=status, rtt=rtt)
            for i, (status, rtt) in enumerate(contacts)
        )
        + ENDPOINT_END
    )


def reply(transcript: str, action: str, *, expects_list: bool = True) -> Reply:
    """Feed a transcript through the client core as the reply to `action`."""
    core = AmiClientCore(ActionIds("t"))
    action_id, _ = core.build_action(action, expects_list=expects_list)
    (ready,) = [
        o
        for o in core.receive_data(transcript.format(id=action_id).encode())
        if isinstance(o, ReplyReady)
    ]
    return ready.reply


# ---------------------------------------------------------------- database


def data_config(tmp_path: Path) -> Config:
    return Config(data_dir=tmp_path / "data")


def test_a_fresh_data_folder_is_a_new_database_not_a_failure(tmp_path: Path) -> None:
    config = data_config(tmp_path)
    check = check_database(config)
    assert check.ok, check.detail
    assert check.detail.endswith(NEW_DATABASE)
    assert not (tmp_path / "data").exists(), "doctor only looks; it creates nothing"


def test_an_empty_database_file_is_new_too(tmp_path: Path) -> None:
    config = data_config(tmp_path)
    engine = create_store_engine(config.effective_database_url)
    engine.connect().close()  # creates the file, and nothing in it
    engine.dispose()
    check = check_database(config)
    assert check.ok and check.detail.endswith(NEW_DATABASE)


def test_a_database_at_the_newest_schema_is_ok(tmp_path: Path) -> None:
    config = data_config(tmp_path)
    engine = create_store_engine(config.effective_database_url)
    upgrade(engine)
    engine.dispose()
    check = check_database(config)
    assert check.ok and check.detail.endswith(f"(schema {head_revision()})")


def test_a_database_at_an_older_schema_fails_and_says_to_upgrade(tmp_path: Path) -> None:
    config = data_config(tmp_path)
    engine = create_store_engine(config.effective_database_url)
    upgrade(engine, "0003")
    engine.dispose()
    check = check_database(config)
    assert not check.ok
    assert check.detail.endswith(
        f"schema at 0003, this dialer expects {head_revision()}: run `dialer db upgrade`"
    )


def test_a_database_at_an_unknown_revision_fails(tmp_path: Path) -> None:
    config = data_config(tmp_path)
    engine = create_store_engine(config.effective_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('9999')"))
    engine.dispose()
    check = check_database(config)
    assert not check.ok
    assert "schema at 9999, a revision this dialer does not know" in check.detail


# ---------------------------------------------------------------- the trunk over AMI


def test_a_reachable_trunk_contact_passes_with_its_round_trip() -> None:
    check = trunk_contacts_check(
        SERVER, "trunk", reply(endpoint_reply(("Reachable", "536")), "PJSIPShowEndpoint")
    )
    assert check.ok
    assert (check.name, check.detail) == (
        "trunk trunk on pbx1",
        "reachable: sip:127.0.0.1:37976 (0.5 ms)",
    )


def test_one_reachable_contact_is_enough_and_the_others_are_named() -> None:
    transcript = endpoint_reply(("Unreachable", "N/A"), ("Reachable", "1200"))
    check = trunk_contacts_check(SERVER, "trunk", reply(transcript, "PJSIPShowEndpoint"))
    assert check.ok
    assert (
        check.detail == "reachable: sip:127.0.0.1:37977 (1.2 ms); unreachable: sip:127.0.0.1:37976"
    )


def test_an_unreachable_trunk_fails() -> None:
    transcript = endpoint_reply(("Unreachable", "N/A"))
    check = trunk_contacts_check(SERVER, "trunk", reply(transcript, "PJSIPShowEndpoint"))
    assert not check.ok and check.required
    assert check.detail.startswith(
        "unreachable: sip:127.0.0.1:37976 Unreachable (no answer to OPTIONS"
    )


@pytest.mark.parametrize("status", ["NonQualified", "Unknown"])
def test_a_contact_not_qualified_yet_is_a_warning(status: str) -> None:
    transcript = endpoint_reply((status, "N/A"))
    check = trunk_contacts_check(SERVER, "trunk", reply(transcript, "PJSIPShowEndpoint"))
    assert not check.ok and not check.required
    assert check.detail.startswith(f"not known to be reachable: sip:127.0.0.1:37976 {status}")


def test_a_trunk_without_contacts_fails() -> None:
    check = trunk_contacts_check(SERVER, "trunk", reply(endpoint_reply(), "PJSIPShowEndpoint"))
    assert not check.ok
    assert check.detail.startswith("no contact: calls to the trunk have nowhere to go")


def test_a_trunk_asterisk_does_not_know_fails_naming_the_files() -> None:
    check = trunk_contacts_check(SERVER, "trunk", reply(NO_ENDPOINT, "PJSIPShowEndpoint"))
    assert not check.ok
    assert check.detail == (
        "Asterisk has no PJSIP endpoint 'trunk' (Unable to retrieve endpoint trunk): check "
        "pjsip_wizard.conf / pjsip.conf, then `module reload res_pjsip.so`"
    )


def test_a_user_without_the_system_class_is_told_what_to_add() -> None:
    check = trunk_contacts_check(SERVER, "trunk", reply(DENIED, "PJSIPShowEndpoint"))
    assert not check.ok
    assert check.detail == (
        "the AMI user may not send PJSIPShowEndpoint: add system to write = of [dialer] in "
        "manager.conf"
    )


def test_a_registered_trunk_passes() -> None:
    transcript = REGISTRATION.format(status="Registered")
    check = trunk_registration_check(
        SERVER, "trunk", reply(transcript, "PJSIPShowRegistrationsOutbound")
    )
    assert check is not None and check.ok
    assert check.detail == "trunk-reg-0 to sip:127.0.0.1:53776 Registered"


@pytest.mark.parametrize("status", ["Rejected", "Unregistered"])
def test_a_failing_registration_fails(status: str) -> None:
    transcript = REGISTRATION.format(status=status)
    check = trunk_registration_check(
        SERVER, "trunk", reply(transcript, "PJSIPShowRegistrationsOutbound")
    )
    assert check is not None and not check.ok and check.required
    assert check.detail.startswith(f"trunk-reg-0 to sip:127.0.0.1:53776 {status}: Rejected is")
    assert CARRIER_PASSWORD not in check.detail


def test_a_trunk_without_registrations_says_nothing_about_them() -> None:
    none = reply(REGISTRATIONS_NONE, "PJSIPShowRegistrationsOutbound")
    assert trunk_registration_check(SERVER, "trunk", none) is None
    other = reply(REGISTRATION.format(status="Rejected"), "PJSIPShowRegistrationsOutbound")
    assert trunk_registration_check(SERVER, "carrier2", other) is None
    absent = reply(UNKNOWN_ACTION, "PJSIPShowRegistrationsOutbound")
    assert trunk_registration_check(SERVER, "trunk", absent) is None


# ---------------------------------------------------------------- a fake Asterisk on a socket


Script = dict[str, str]


FakeAmi = Callable[[Script], Awaitable[int]]


@pytest.fixture
async def fake_ami() -> AsyncIterator[FakeAmi]:
    """Fake AMI servers answering each action from a script (action -> transcript)."""
    servers: list[asyncio.Server] = []

    async def serve(script: Script) -> int:
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"Asterisk Call Manager/9.0.0\r\n")
            try:
                while True:
                    frame = (await reader.readuntil(b"\r\n\r\n")).decode()
                    fields = dict(
                        line.split(": ", 1) for line in frame.split("\r\n") if ": " in line
                    )
                    if fields["Action"] == "Login" and fields["Secret"] != "dialer-s3cret":
                        answer = "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"
                    else:
                        answer = script.get(fields["Action"], UNKNOWN_ACTION)
                    writer.write(answer.format(id=fields["ActionID"]).encode())  # "": silence
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


LOGIN = "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"


def pjsip_config(port: int, secret: str = "dialer-s3cret") -> Config:
    server = AmiServerConfig(name="pbx1", port=port, secret=Secret(secret))
    return Config(ami=AmiConfig(servers=(server,)), dialing=PJSIP)


async def test_doctor_logs_in_and_reads_the_trunk_over_ami(fake_ami: FakeAmi) -> None:
    script = {
        "Login": LOGIN,
        "PJSIPShowEndpoint": endpoint_reply(("Reachable", "536")),
        "PJSIPShowRegistrationsOutbound": REGISTRATION.format(status="Rejected"),
    }
    port = await fake_ami(script)
    config = pjsip_config(port)
    checks = await check_ami_server(config.ami.servers[0], config)
    assert [(c.name, c.ok) for c in checks] == [
        (f"ami pbx1 127.0.0.1:{port}", True),
        ("trunk trunk on pbx1", True),
        ("trunk trunk registration on pbx1", False),
    ]
    assert checks[0].detail == "logged in as dialer (Asterisk Call Manager/9.0.0)"
    shown = json.dumps([c.detail for c in checks])
    assert CARRIER_PASSWORD not in shown and "dialer-s3cret" not in shown


async def test_a_refused_login_is_one_failed_check(fake_ami: FakeAmi) -> None:
    port = await fake_ami({"Login": LOGIN})
    config = pjsip_config(port, secret="wrong")
    (check,) = await check_ami_server(config.ami.servers[0], config)
    assert not check.ok
    assert check.detail == "login as 'dialer' refused: Authentication failed; check manager.conf"


async def test_an_asterisk_that_never_answers_is_one_failed_check(fake_ami: FakeAmi) -> None:
    port = await fake_ami({"Login": ""})
    config = pjsip_config(port)
    config = dataclasses.replace(config, ami=dataclasses.replace(config.ami, connect_timeout_s=0.2))
    (check,) = await check_ami_server(config.ami.servers[0], config)
    assert (check.ok, check.detail) == (
        False,
        "no reply in time: is Asterisk overloaded or stopping?",
    )


async def test_a_local_channel_template_skips_the_trunk(fake_ami: FakeAmi) -> None:
    port = await fake_ami({"Login": LOGIN})
    config = pjsip_config(port)
    config = Config(ami=config.ami)  # Local/{number}@debtor-sim
    checks = await check_ami_server(config.ami.servers[0], config)
    assert [c.ok for c in checks] == [True]


# ---------------------------------------------------------------- config checks, the command


def test_the_placeholder_caller_id_is_a_warning_without_the_asterisk_folder() -> None:
    (check,) = check_configs(Config(), None, None)
    assert (check.name, check.ok, check.required) == ("dialer config", False, False)
    assert 'caller_id is the placeholder "Collections" <8005550100>' in check.detail


def test_the_asterisk_folder_is_checked_when_given(tmp_path: Path) -> None:
    checks = check_configs(Config(dialing=PJSIP), None, SHIPPED)
    assert [(c.name, c.ok, c.required) for c in checks] == [
        ("asterisk config", False, False),  # the shipped secret is a placeholder
        ("asterisk config", True, True),
    ]
    broken = tmp_path / "etc"
    broken.mkdir()
    (check, *_) = check_configs(Config(dialing=PJSIP), None, broken)
    assert (check.ok, check.required) == (False, True)
    assert check.detail == f"extensions.conf: not found in {broken}"


def test_doctor_reports_a_new_database_and_what_the_asterisk_folder_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, ami_port = tmp_path / "dialer.toml", free_port()  # nothing listens there
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[[ami.servers]]\nname = "pbx1"\nport = {ami_port}\n'
        "[agi]\nport = 0\n[dialing]\ncaller_id = '\"X\" <2125550100>'\n"
    )
    code = main(["doctor", "--config", str(path), "--asterisk-conf", str(SHIPPED), "--json"])
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["database"]["ok"] and NEW_DATABASE in checks["database"]["detail"]
    assert not checks[f"ami pbx1 127.0.0.1:{ami_port}"]["ok"]
    lines = (SHIPPED / "manager.conf").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("port"))
    failing = [
        c["detail"] for c in report["checks"] if c["name"] == "asterisk config" and c["required"]
    ]
    assert failing == [
        f"manager.conf:{line} [general]: port = 5038, but ami.servers[0] (pbx1) connects to port "
        f"{ami_port}: make them the same"
    ]
    assert code == 1


# ---------------------------------------------------------------- against a real Asterisk


@pytest.mark.asterisk
@pytest.mark.slow
def test_doctor_sees_the_shipped_trunk_reach_the_lab_carrier(
    tmp_path: Path, asterisk_lab: Callable[..., AsteriskLab]
) -> None:
    reason = sipp_available()
    if reason is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    lab = asterisk_lab("pbx")
    carrier = SippCarrier(lab.ports.carrier, workdir=tmp_path / "carrier", max_seconds=120)
    carrier.start()
    try:
        config = pjsip_config(lab.ports.ami, secret=lab.ami_secret)
        # Asterisk sends the first OPTIONS within qualify_frequency (30 s) of booting; an
        # engineer in a hurry asks for one at once, as this test does.
        deadline = time.monotonic() + 45
        while True:
            lab.cli("pjsip qualify trunk")
            checks = asyncio.run(check_ami_server(config.ami.servers[0], config))
            if checks[-1].ok or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert [c.name for c in checks] == [
            f"ami pbx1 127.0.0.1:{lab.ports.ami}",
            "trunk trunk on pbx1",
        ]
        assert checks[-1].ok, checks[-1].detail
        assert checks[-1].detail.startswith(f"reachable: sip:127.0.0.1:{lab.ports.carrier} (")
    finally:
        carrier.stop()
