"""`dialer messages`: a dry run, a batch sent once however often it is run, a debtor's log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialer.cli import main
from dialer.store.db import open_store
from tests.messaging_fixtures import seed

TEMPLATES = """
[templates.gentle]
channel = "sms"
[templates.gentle.en]
body = "Hi {name}, {amount} was due on {due_date}. Pay: {payment_link}"
[templates.gentle."zh-CN"]
body = "{name}您好，您有{amount}已于{due_date}到期，请通过{payment_link}还款。"
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    db = tmp_path / "dialer.db"
    store = open_store(f"sqlite:///{db}")
    seed(store, count=3)
    store.close()
    config = tmp_path / "dialer.toml"
    config.write_text(
        f'database_url = "sqlite:///{db}"\ndata_dir = "{tmp_path}"\n'
        '[campaign]\ntenant = "bank"\n[compliance]\nruleset = "cn"\n',
        encoding="utf-8",
    )
    (tmp_path / "templates.toml").write_text(TEMPLATES, encoding="utf-8")
    outbox = tmp_path / "outbox.jsonl"
    messaging = tmp_path / "messaging.toml"
    messaging.write_text(
        'templates = "templates.toml"\npayment_link = "https://pay.example.cn/{debtor}"\n'
        f'[sms]\nprovider = "file"\npath = "{outbox}"\n',
        encoding="utf-8",
    )
    return config, messaging, outbox


def _lines(path: Path) -> list[dict[str, str]]:
    return (
        [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        if path.exists()
        else []
    )


def test_a_batch_from_the_cli_goes_once_however_often_it_is_run(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, messaging, outbox = setup
    base = ["messages", "--config", str(config), "--messaging", str(messaging)]
    send = [
        *base,
        "send",
        "--template",
        "gentle",
        "--to",
        "D-1,D-2,D-3",
        "--batch",
        "dec",
        "--no-progress",
    ]

    assert main([*send, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "dry run of dec: 3 messages" in dry
    assert outbox.exists() is False

    assert main(send) == 0
    first = capsys.readouterr().out
    assert "dec: 3 new, 0 already planned" in first
    sent_first = len(_lines(outbox))
    # Sent now or scheduled for the morning, depending on the hour in Beijing as the test runs.
    assert f"sent {sent_first}, scheduled {3 - sent_first}" in first

    assert main(send) == 0
    again = capsys.readouterr().out
    assert "dec: 0 new, 3 already planned; sent 0" in again
    assert len(_lines(outbox)) == sent_first
    assert len({m["ref"] for m in _lines(outbox)}) == sent_first

    assert main([*base, "log", "--debtor", "D-1", "--json"]) == 0
    [logged] = json.loads(capsys.readouterr().out)
    assert logged["body"].startswith("张1您好")
    assert logged["status"] in ("sent", "scheduled")


def test_an_unknown_debtor_and_an_unknown_template_are_named(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, messaging, _ = setup
    base = ["messages", "--config", str(config), "--messaging", str(messaging)]
    assert main([*base, "send", "--template", "gentle", "--to", "D-1,D-99", "--dry-run"]) == 2
    assert "unknown debtor ids: D-99" in capsys.readouterr().err
    assert main([*base, "send", "--template", "firm", "--to", "D-1", "--dry-run"]) == 2
    assert "template 'firm' not in" in capsys.readouterr().err


def test_a_batch_goes_to_the_debtors_of_a_saved_segment_only(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select

    from dialer.cases.models import Actor
    from dialer.cases.segments import save_segment
    from dialer.cases.state import open_cases
    from dialer.store.models import Debtor

    config, messaging, _ = setup
    db = config.parent / "dialer.db"
    store = open_store(f"sqlite:///{db}")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with store.begin() as conn:
        debtors = dict(conn.execute(select(Debtor.external_id, Debtor.id)).all())
        tenant_id = conn.execute(select(Debtor.tenant_id)).scalars().first()
        open_cases(conn, tenant_id, debtors.values(), Actor.system("import"), now)
    # Balances are 1,001, 1,002 and 1,003: the segment holds D-2 and D-3.
    save_segment(store, tenant_id, "big", {"balance_min": 1002}, Actor.user("mei"), now)
    store.close()
    base = ["messages", "--config", str(config), "--messaging", str(messaging), "send"]
    argv = [*base, "--template", "gentle", "--batch", "seg", "--dry-run"]
    assert main([*argv, "--to", "segment:big"]) == 0
    out = capsys.readouterr().out
    assert "dry run of seg: 2 messages" in out
    assert "debtor " + str(debtors["D-1"]) + " " not in out
    assert main([*argv, "--to", "segment:nope"]) == 2
    assert "no segment 'nope'" in capsys.readouterr().err
