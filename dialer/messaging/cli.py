"""`dialer messages`: preview, send a batch (resumable, with a progress bar), send what is due,
poll receipts, record a reply, show a debtor's message log."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from tqdm import tqdm

from dialer.cases.segments import segment_debtor_ids
from dialer.config import Config, load_config
from dialer.gates import build_guard
from dialer.logsafe import mask_phone
from dialer.messaging.audience import (
    all_debtors_with_open_debts,
    debtor_ids_by_external,
    read_audience_csv,
)
from dialer.messaging.config import MessagingFile, build_providers, load_messaging_file
from dialer.messaging.errors import MessagingError
from dialer.messaging.http_sms import HttpSmsProvider
from dialer.messaging.models import Channel, MessageStatus
from dialer.messaging.service import (
    DispatchReport,
    MessagingService,
    MessagingSettings,
    messages_for_debtor,
)
from dialer.messaging.tables import Message
from dialer.messaging.templates import Template, load_templates
from dialer.store.db import Store, open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="dialer TOML config")
    parser.add_argument(
        "--messaging",
        type=Path,
        default=Path("messaging.toml"),
        help="messaging settings: templates, payment link, providers (default: messaging.toml)",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = sub.add_parser("send", help="send a template to a list of debtors")
    send.add_argument("--template", required=True)
    send.add_argument(
        "--to",
        required=True,
        help="all (every debtor with an open debt), segment:NAME (the debtors of a saved "
        "segment's cases), csv:FILE (column debtor_id; the imported portfolio file works), or "
        "debtor ids separated by commas",
    )
    send.add_argument(
        "--batch",
        default=None,
        help="the batch's name; running a batch again never sends twice "
        "(default: TEMPLATE-YYYY-MM-DD, so a re-run the same day resumes)",
    )
    send.add_argument("--language", choices=("zh-CN", "en"), default=None)
    send.add_argument("--dry-run", action="store_true", help="show what would go; write nothing")
    send.add_argument("--no-progress", action="store_true")
    preview = sub.add_parser("preview", help="one debtor's message and the guard's answer")
    preview.add_argument("--template", required=True)
    preview.add_argument("--debtor", required=True, help="the creditor's debtor id")
    preview.add_argument("--language", choices=("zh-CN", "en"), default=None)
    sub.add_parser("due", help="send scheduled messages whose time has come (run it from cron)")
    sub.add_parser("receipts", help="poll the SMS gateway for delivery receipts")
    inbound = sub.add_parser("inbound", help="record a reply (STOP / 退订 opts the number out)")
    inbound.add_argument("--from", dest="sender", required=True, help="E.164 number")
    inbound.add_argument("--text", required=True)
    show = sub.add_parser("log", help="a debtor's messages, oldest first")
    show.add_argument("--debtor", required=True, help="the creditor's debtor id")
    show.add_argument("--json", action="store_true")


class _Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.config: Config = load_config(args.config)
        self.settings: MessagingFile = load_messaging_file(args.messaging)
        self.tenant = self.settings.tenant or self.config.campaign.tenant
        self.store: Store = open_store(self.config.effective_database_url)
        self.providers = build_providers(self.settings)
        self.service = MessagingService(
            self.store,
            build_guard(self.config, self.store),
            self.providers,
            MessagingSettings(
                tenant=self.tenant,
                campaign_id=self.settings.campaign_id,
                payment_link=self.settings.payment_link,
            ),
        )

    def template(self, name: str) -> Template:
        if self.settings.templates is None:
            raise MessagingError(f"{self.settings.source}: templates: no template file named")
        templates = load_templates(self.settings.templates)
        if name not in templates:
            raise MessagingError(
                f"template {name!r} not in {self.settings.templates} "
                f"(there: {', '.join(sorted(templates))})"
            )
        return templates[name]

    def debtor_ids(self, spec: str) -> list[int]:
        if spec.startswith("segment:"):
            return segment_debtor_ids(self.store, self.service.tenant_id, spec[8:])
        with self.store.begin() as conn:
            if spec == "all":
                return all_debtors_with_open_debts(conn, self.service.tenant_id)
            if spec.startswith("csv:"):
                external = read_audience_csv(Path(spec[4:]))
            else:
                external = [e.strip() for e in spec.split(",") if e.strip()]
            return debtor_ids_by_external(conn, self.service.tenant_id, external)

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()
        self.store.close()


def _send(ctx: _Context, args: argparse.Namespace) -> int:
    template = ctx.template(args.template)
    ids = ctx.debtor_ids(args.to)
    batch = args.batch or f"{template.name}-{datetime.now(UTC).date().isoformat()}"
    plan, previews = ctx.service.plan(
        template, ids, batch, language=args.language, dry_run=args.dry_run
    )
    for s in plan.skipped:
        print(f"  skipped debtor {s.debtor_id}: {s.reason}")
    if args.dry_run:
        allowed = sum(p.decision.allowed for p in previews)
        for p in previews[:5]:
            verdict = (
                "would go now"
                if p.decision.allowed
                else "would wait: " + "; ".join(r.rule for r in p.decision.reasons)
            )
            print(
                f"  debtor {p.debtor_id} {mask_phone(p.recipient)} [{p.rendered.language}] {verdict}"
            )
            print(f"    {p.rendered.body}")
        print(
            f"dry run of {batch}: {len(previews)} messages, {allowed} would go now, "
            f"{len(previews) - allowed} would wait or be refused, {len(plan.skipped)} skipped"
        )
        return 0
    with ctx.store.begin() as conn:
        open_count = conn.execute(
            select(func.count()).where(
                Message.tenant_id == ctx.service.tenant_id,
                Message.batch_key == batch,
                Message.status.in_([MessageStatus.PLANNED.value, MessageStatus.SENDING.value]),
            )
        ).scalar_one()
    show = not args.no_progress and sys.stderr.isatty()
    with tqdm(total=open_count, unit="msg", disable=not show, desc=batch) as bar:

        def advance(n: int, _chunk: DispatchReport) -> None:
            bar.update(n)

        report = ctx.service.dispatch(batch, progress=advance)
    print(
        f"{batch}: {plan.created} new, {plan.existing} already planned; sent {report.sent}, "
        f"scheduled {report.scheduled}, refused {report.blocked}, failed {report.failed}, "
        f"unknown {report.unknown}, skipped {len(plan.skipped)}"
    )
    return 1 if report.failed or report.unknown else 0


def _receipts(ctx: _Context) -> int:
    provider = ctx.providers.get(Channel.SMS)
    if not isinstance(provider, HttpSmsProvider):
        raise MessagingError("receipts: only the http SMS provider is polled")
    cursor_file = ctx.config.data_dir / "messaging-receipts.cursor"
    cursor = cursor_file.read_text().strip() if cursor_file.exists() else ""
    receipts, cursor = provider.poll_receipts(cursor)
    matched = ctx.service.apply_receipts(receipts)
    cursor_file.parent.mkdir(parents=True, exist_ok=True)
    cursor_file.write_text(cursor)
    print(f"{len(receipts)} receipts, {matched} matched our messages")
    return 0


def run(args: argparse.Namespace) -> int:
    ctx = _Context(args)
    try:
        if args.action == "send":
            return _send(ctx, args)
        if args.action == "preview":
            [debtor] = ctx.debtor_ids(args.debtor)
            p = ctx.service.preview(ctx.template(args.template), debtor, args.language)
            print(
                f"to {mask_phone(p.recipient) if '@' not in p.recipient else p.recipient} "
                f"[{p.rendered.language}]"
            )
            if p.rendered.subject:
                print(f"subject: {p.rendered.subject}")
            print(p.rendered.body)
            if p.decision.allowed:
                print("guard: may go now")
            else:
                for r in p.decision.reasons:
                    print(f"guard: {r.rule}: {r.message}")
                if p.decision.next_allowed_at:
                    print(f"guard: next allowed at {p.decision.next_allowed_at.isoformat()}")
            return 0
        if args.action == "due":
            report = ctx.service.dispatch()
            print(
                f"sent {report.sent}, scheduled {report.scheduled}, refused {report.blocked}, "
                f"failed {report.failed}, unknown {report.unknown}"
            )
            return 1 if report.failed else 0
        if args.action == "receipts":
            return _receipts(ctx)
        if args.action == "inbound":
            result = ctx.service.handle_inbound(args.sender, args.text)
            if result.opted_out:
                print(
                    f"{mask_phone(args.sender)} opted out ({', '.join(result.flags)}): "
                    f"{', '.join(result.channels_refused)} now refused"
                )
            else:
                print("recorded; not an opt-out")
            return 0
        [debtor] = ctx.debtor_ids(args.debtor)
        views = messages_for_debtor(ctx.store, ctx.service.tenant_id, debtor)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": v.id,
                            "direction": v.direction,
                            "channel": v.channel,
                            "at": v.at.isoformat(),
                            "status": v.status,
                            "body": v.body,
                            "decision": v.decision,
                        }
                        for v in views
                    ],
                    ensure_ascii=False,
                )
            )
        else:
            for v in views:
                print(f"{v.at.isoformat()} {v.direction} {v.channel} {v.status}: {v.body}")
        return 0
    finally:
        ctx.close()
