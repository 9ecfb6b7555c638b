"""`dialer strategy check|explain|run|set|clear-override`: a manager's strategy and score files
checked before use, one case's score and strategy shown with their reasons, the day's run, and
a manager's choice of strategy for a case."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dialer.cases.aging import AgeingReport, age_debts
from dialer.cases.config_files import ConfigFileError
from dialer.cases.errors import CaseError
from dialer.cases.models import Actor
from dialer.cases.scoring import CaseFeatures, LogisticModel, PointsModel, load_score_model, score
from dialer.cases.strategy import (
    SHIPPED,
    CaseFacts,
    ContactStep,
    Strategies,
    choose,
    load_strategies,
)
from dialer.cases.strategy_run import (
    RunReport,
    clear_override,
    override_strategy,
    run_strategies,
)
from dialer.cases.tenant_files import TenantFiles
from dialer.config import Config, load_config
from dialer.errors import ConfigError
from dialer.gates import build_guard
from dialer.messaging.config import build_providers, load_messaging_file
from dialer.messaging.errors import MessagingError
from dialer.messaging.service import MessagingService, MessagingSettings
from dialer.messaging.templates import Template, load_templates
from dialer.store.db import Store, open_store
from dialer.store.models import Tenant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="check a strategies file (and a score file); every error names its key",
    )
    check.add_argument("file", type=Path, nargs="?", default=SHIPPED, help="TOML or JSON")
    check.add_argument("--score", type=Path, default=SHIPPED.with_name("score.toml"))
    check.add_argument("--json", action="store_true")
    explain = sub.add_parser(
        "explain", help="one case's risk score term by term and the strategy it would get"
    )
    explain.add_argument("--strategies", type=Path, default=SHIPPED)
    explain.add_argument("--score", type=Path, default=SHIPPED.with_name("score.toml"))
    explain.add_argument("--days-past-due", type=int, required=True)
    explain.add_argument("--balance", type=float, required=True)
    explain.add_argument("--principal", type=float, default=None)
    explain.add_argument("--broken-promises", type=int, default=0)
    explain.add_argument("--kept-promises", type=int, default=0)
    explain.add_argument("--paid-ratio", type=float, default=0.0)
    explain.add_argument("--days-since-last-contact", type=int, default=None)
    explain.add_argument("--region", default=None)
    explain.add_argument("--json", action="store_true")
    run = sub.add_parser(
        "run",
        help="advance every open case one day: send, queue for calls, escalate (run daily)",
        description="Ages unpaid debts to today (days past due), scores cases never scored, "
        "gives each open case its strategy (or a stricter one, unless a manager chose it), "
        "takes the day's steps and carries them out. "
        "Running a day twice does nothing twice.",
    )
    run.add_argument(
        "--date", type=date.fromisoformat, default=None, help="today, YYYY-MM-DD (default: UTC)"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="count what would be done; write nothing"
    )
    run.add_argument(
        "--messaging",
        type=Path,
        default=Path("messaging.toml"),
        help="messaging settings (providers, payment link; its templates replace the shipped "
        "ones by name); needed when the strategies send SMS or e-mail",
    )
    override = sub.add_parser(
        "set", help="a manager's choice of strategy for a case, kept through the nightly re-choice"
    )
    override.add_argument("case_id", type=int)
    override.add_argument("strategy")
    override.add_argument("--why", required=True, help="the reason, kept in the case history")
    override.add_argument("--by", default="cli", help="the manager's user name")
    clear = sub.add_parser("clear-override", help="let the nightly re-choice decide again")
    clear.add_argument("case_id", type=int)
    clear.add_argument("--why", default="override cleared", help="kept in the case history")
    clear.add_argument("--by", default="cli", help="the manager's user name")
    for p in (run, override, clear):
        p.add_argument("--config", type=Path, default=None, help="dialer TOML config")
        p.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
        p.add_argument(
            "--strategies",
            type=Path,
            default=None,
            help="strategies file (default: the tenant's, as saved at the manager pages, else "
            "the shipped one)",
        )
        p.add_argument("--score", type=Path, default=SHIPPED.with_name("score.toml"))
        p.add_argument("--json", action="store_true")


def _load(strategies: Path, score_file: Path) -> tuple[Strategies, PointsModel | LogisticModel]:
    return load_strategies(strategies), load_score_model(str(score_file))


def _steps(strategy_steps: list[object]) -> list[str]:
    out = []
    for step in strategy_steps:
        if isinstance(step, ContactStep):
            out.append(f"{step.kind} {step.campaign or step.template}")
        else:
            out.append(getattr(step, "kind", "?"))
    return out


def _tenant_id(store: Store, name: str) -> int:
    with store.begin() as conn:
        found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
    if found is None:
        raise CaseError(f"no tenant {name!r}")
    return int(found)


def _messaging(
    path: Path, config: Config, store: Store, tenant: str, templates: dict[str, Template]
) -> tuple[MessagingService, dict[str, Template], list[Any]]:
    settings = load_messaging_file(path)
    providers = build_providers(settings)
    service = MessagingService(
        store,
        build_guard(config, store),
        providers,
        MessagingSettings(
            # The run's tenant: its cases are the ones the messages go to.
            tenant=tenant,
            campaign_id=settings.campaign_id,
            payment_link=settings.payment_link,
        ),
    )
    if settings.templates is not None:
        # The messaging file's own templates file wins over the pages' for this run.
        templates = {**templates, **load_templates(settings.templates)}
    return service, templates, list(providers.values())


def _print_run(report: RunReport, aged: AgeingReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**report.to_dict(), "aged": aged.aged, "aged_days": aged.days}))
        return
    if aged.aged:
        print(
            f"ageing: {aged.aged} unpaid debts moved on to {aged.today.isoformat()} "
            f"(up to {aged.days} days)"
        )
    print(
        f"strategy run {report.today.isoformat()}: {report.cases} open cases, "
        f"{report.chosen} given a strategy, {report.rechosen} moved to a stricter one, "
        f"{report.already_run} already run today, {report.scored} scored"
        + (" (dry run: nothing written or sent)" if report.dry_run else "")
    )
    for kind, outcomes in sorted(report.actions.items()):
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        print(f"  {kind:<10} {counts}")
    if report.earlier:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.earlier.items()))
        print(f"  messages of earlier runs: {counts}")


def _run_on_store(args: argparse.Namespace, model: Any) -> int:
    config = load_config(args.config)
    store = open_store(config.effective_database_url)
    now = datetime.now(UTC)
    closing: list[Any] = []
    try:
        tenant = args.tenant or config.campaign.tenant
        tenant_id = _tenant_id(store, tenant)
        actor = Actor.user(getattr(args, "by", "cli"))
        if args.action == "clear-override":
            cleared = clear_override(store, tenant_id, args.case_id, actor, args.why, now)
            print(f"case {args.case_id}: " + ("override cleared" if cleared else "no override"))
            return 0
        # What the managers saved at the pages is what the nightly run follows; a file named
        # on the command line replaces the tenant's strategies for this run only.
        saved = TenantFiles(config.data_dir / "tenants")
        strategies = (
            load_strategies(args.strategies)
            if args.strategies is not None
            else saved.strategies(tenant)
        )
        if args.action == "set":
            override_strategy(
                store, tenant_id, args.case_id, args.strategy, strategies, actor, args.why, now
            )
            print(f"case {args.case_id}: strategy {args.strategy}, chosen by {actor}")
            return 0
        today = args.date or now.date()
        # Days past due first: the strategies, the re-score and the selection rules read them.
        aged = age_debts(store, tenant_id, today, dry_run=args.dry_run)
        messaging, templates = None, dict(saved.templates(tenant))
        if args.messaging.exists():
            messaging, templates, closing = _messaging(
                args.messaging, config, store, tenant, templates
            )
        report = run_strategies(
            store,
            tenant_id,
            strategies,
            model,
            today=today,
            now=now,
            messaging=messaging,
            templates=templates,
            dry_run=args.dry_run,
        )
        _print_run(report, aged, args.json)
        return 0
    except ConfigFileError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    except (CaseError, ConfigError, MessagingError) as exc:
        print(f"dialer strategy {args.action}: {exc}", file=sys.stderr)
        return 2
    finally:
        for provider in closing:
            provider.close()
        store.close()


def run(args: argparse.Namespace) -> int:
    if args.action in ("run", "set", "clear-override"):
        try:
            model = load_score_model(str(args.score))
        except ConfigFileError as exc:
            for problem in exc.problems:
                print(f"{exc.source}: {problem}", file=sys.stderr)
            return 2
        return _run_on_store(args, model)
    try:
        strategies, model = _load(
            args.file if args.action == "check" else args.strategies, args.score
        )
    except ConfigFileError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    if args.action == "check":
        if args.json:
            print(
                json.dumps(
                    {
                        "strategies": {
                            name: _steps(list(s.steps)) for name, s in strategies.strategies.items()
                        },
                        "selection_rules": len(strategies.selection),
                        "default": strategies.default,
                        "score_model": model.name,
                    },
                    ensure_ascii=False,
                )
            )
            return 0
        for name, s in strategies.strategies.items():
            print(f"{name} ({s.title}): " + ", ".join(_steps(list(s.steps))))
        print(f"{len(strategies.selection)} selection rules, default {strategies.default}")
        print(f"score model {model.name} ({model.kind}): ok")
        return 0
    features = CaseFeatures(
        days_past_due=args.days_past_due,
        balance=args.balance,
        principal=args.principal if args.principal is not None else args.balance,
        broken_promises=args.broken_promises,
        kept_promises=args.kept_promises,
        paid_ratio=args.paid_ratio,
        days_since_last_contact=args.days_since_last_contact,
        region=args.region,
    )
    result = score(model, features)
    facts = CaseFacts(
        balance=args.balance,
        days_past_due=args.days_past_due,
        broken_promises=args.broken_promises,
    )
    choice = choose(strategies, facts, result, args.days_since_last_contact is None)
    if args.json:
        print(
            json.dumps(
                {
                    "risk": result.value,
                    "band": result.band.value,
                    "terms": [
                        {"feature": t.feature, "points": t.contribution, "reason": t.reason}
                        for t in result.terms
                    ],
                    "strategy": choice.strategy,
                    "reasons": list(choice.reasons),
                }
            )
        )
        return 0
    print(result.explain())
    print(f"strategy {choice.strategy}: " + "; ".join(choice.reasons))
    return 0
