"""`hybridesk init`: everything the product needs before its first customer, idempotently."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.db.migrate import upgrade

SAMPLE_ORDERS = Path(__file__).resolve().parent / "sample" / "orders.jsonl"


def initialise(services: Any, *, admin_email: str | None = "admin@larkspur.example", train_nlu: bool = True,
               out: Callable[[str], None] = print) -> dict[str, Any]:
    """Migrate, load the sample KB and orders, train NLU, convert the base model, create an admin."""
    settings = services.settings
    if admin_email:
        from bot.cli_users import check_email

        check_email(admin_email)  # a typo fails now, not after minutes of KB import and NLU training
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    upgrade(settings.resolved_database_url)
    out("database: migrated to the newest schema")

    summary["orders"] = load_sample_orders(services)
    out(f"sample orders: {summary['orders']} loaded")

    report = services.knowledge.import_folder(settings.kb_sample_dir, author="hybridesk init")
    summary["kb"] = report
    out(f"knowledge base: {_describe_report(report)}")
    for err in getattr(report, "errors", []) or []:
        out(f"  skipped {err}")

    if train_nlu:
        registry = services.nlu
        if not registry.has_active():
            if settings.nlu_use_public_data:
                out("NLU: training intent and tone models on the sample tickets + public data, including a "
                    "fine-tuned tone branch (about 10 minutes on a 2-core machine; under a minute without "
                    "the public data)...")
            else:
                out("NLU: training intent and tone models on the sample tickets (under a minute)...")
            version = registry.train_default(tickets=settings.tickets_sample_path,
                                             shared_data_dir=settings.shared_data_dir,
                                             use_public=settings.nlu_use_public_data,
                                             families=settings.nlu_intent_families.split(","))
            out(f"NLU: model {version} trained and active")
        else:
            out("NLU: active model present")

    from bot.settings import resolved_generator

    if resolved_generator(settings) in ("transformers", "llamacpp") and settings.base_model_dir is None:
        from models.base import ensure_base_model

        path = ensure_base_model(settings.model_cache_dir)
        out(f"base model: ready at {path}")

    if admin_email:
        summary["admin_password"] = ensure_admin(services, admin_email, out)
    return summary


def _describe_report(report: Any) -> str:
    if hasattr(report, "summary"):
        return report.summary()
    return str(report)


def load_sample_orders(services: Any, path: Path = SAMPLE_ORDERS) -> int:
    from bot.db.models import Order
    from bot.db.repositories import OrderRepository

    if not path.exists():
        return 0
    with services.db.unit_of_work() as session:
        repo = OrderRepository(session)
        if repo.count() > 0:
            return repo.count()
        n = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            repo.upsert(Order(
                order_number=row["order_number"], email=row["email"], status=row["status"],
                placed_at=_dt(row["placed_at"]), items=row.get("items", []), total=float(row.get("total", 0)),
                currency=row.get("currency", "EUR"), carrier=row.get("carrier"),
                tracking_code=row.get("tracking_code"),
                estimated_delivery=_dt(row["estimated_delivery"]) if row.get("estimated_delivery") else None,
            ))
            n += 1
        return n


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ensure_admin(services: Any, email: str, out: Callable[[str], None]) -> str | None:
    """Create the first admin if there are no accounts yet; its password is printed once."""
    from bot.cli_users import add_user
    from bot.db.repositories import UserRepository
    from bot.security import new_password

    with services.db.unit_of_work() as session:
        if UserRepository(session).list():
            return None
        password = new_password()
        add_user(session, email, "admin", password, "Administrator")
    out(f"admin account: {email}  password (shown once, keep it): {password}")
    return password
