"""The `flask --app app ...` commands: migrations, demo data, background workers."""
from __future__ import annotations

import threading
from pathlib import Path

import click
from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app, has_app_context
from flask.cli import AppGroup

from database import get_database
from models.base import utcnow
from web.blobs import get_blob_store

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

db_cli = AppGroup("db", help="Database schema (Alembic).")
demo_cli = AppGroup("demo", help="Demo content for the embedded default.")


def alembic_config(database_url: str) -> AlembicConfig:
    cfg = AlembicConfig(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    if has_app_context():
        # Migrations that move bytes (large files into the blob store, and back) use the app's store.
        cfg.attributes["blob_store"] = get_blob_store()
        cfg.attributes["export_dir"] = current_app.config["EXPORT_DIR"]
    return cfg


def _prepare_sqlite_dir(url: str) -> None:
    # SQLite creates the file but not its folder (instance/ on a fresh clone).
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    url = current_app.config["DATABASE_URL"]
    _prepare_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database back to REVISION (a revision id, or -1 for one step)."""
    command.downgrade(alembic_config(current_app.config["DATABASE_URL"]), revision)
    click.echo(f"database at {revision}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Write a new migration from the difference between models and database."""
    url = current_app.config["DATABASE_URL"]
    command.revision(alembic_config(url), message=message, autogenerate=True)


@demo_cli.command("load")
def demo_load() -> None:
    """Load demo schools (idempotent)."""
    from handlers import demo

    session = get_database().sessions()
    try:
        created = demo.load_demo(session)
        if current_app.config["XINWEI_ENV"] != "production":
            created += demo.load_demo_accounts(session)
        session.commit()
    finally:
        session.close()
    click.echo(f"demo data loaded ({created} new rows)")


content_cli = AppGroup("content", help="The course catalog (content/courses/*.toml).")
COURSES_DIR = Path(__file__).resolve().parent / "content" / "courses"


def _catalog_files(paths: tuple[str, ...]) -> list[Path]:
    return [Path(p) for p in paths] if paths else sorted(COURSES_DIR.glob("*.toml"))


def _echo_problems(path: Path, problems: list) -> None:  # type: ignore[type-arg]
    # The console's messages and lines (handlers/catalog/problems.py), as file:line: message.
    for problem in problems:
        click.echo(f"  {path.name}:{problem.line}: {problem.message}" if problem.line
                   else f"  {path.name}: {problem.message}")


@content_cli.command("check")
@click.argument("paths", nargs=-1)
def content_check(paths: tuple[str, ...]) -> None:
    """Validate catalog files without loading them; every problem on its own line."""
    from handlers.catalog.loader import CatalogError, parse_catalog

    failed = False
    for path in _catalog_files(paths):
        try:
            data = parse_catalog(path.read_text(encoding="utf-8"), path.name)
        except CatalogError as exc:
            failed = True
            click.echo(f"{path.name}: {len(exc.problems)} problem(s)")
            _echo_problems(path, exc.problems)
            continue
        questions = sum(len(t["questions"]) for t in data["topics"])
        click.echo(f"{path.name}: ok ({len(data['topics'])} topics, {questions} questions)")
    if failed:
        raise SystemExit(1)


@content_cli.command("load")
@click.argument("paths", nargs=-1)
def content_load(paths: tuple[str, ...]) -> None:
    """Validate and load catalog files: a changed file becomes the course's next version."""
    from handlers.catalog.loader import CatalogError, load_catalog_file

    files = _catalog_files(paths)
    with get_database().sessions() as session:
        results = []
        for path in files:
            try:
                results.append(load_catalog_file(session, path))
            except CatalogError as exc:
                session.rollback()
                click.echo(f"{path.name}: not loaded")
                _echo_problems(path, exc.problems)
                raise SystemExit(1) from exc
        session.commit()  # all files or none
    for result in results:
        state = f"version {result.version} loaded" if result.created else f"unchanged (version {result.version})"
        click.echo(f"{result.code}: {state}")


@content_cli.command("demo-videos")
@click.option("--catalog", "catalog", default=None, help="Course files (default: content/courses).")
def content_demo_videos(catalog: str | None) -> None:
    """Generate the demo clips ("demo:<name>" topic videos) that are missing; existing ones are kept."""
    from content.videos import ensure_demo_clips
    from web.media import video_dir

    out = video_dir(current_app)
    created = ensure_demo_clips(Path(catalog) if catalog else COURSES_DIR, out)
    click.echo(f"demo videos: {len(created)} created in {out}")


certificates_cli = AppGroup("certificates", help="Issued certificates.")


@certificates_cli.command("export")
@click.option("--school-id", type=int, default=None, help="Only this school (default: all).")
@click.option("--from", "issued_from", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--until", "issued_until", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--by", "requested_by", default="staff:cli", show_default=True)
def certificates_export(school_id: int | None, issued_from, issued_until, requested_by: str) -> None:  # type: ignore[no-untyped-def]
    """Queue a zip of valid certificates' PDFs; a worker builds it into the blob store with progress."""
    from handlers.certificates.exports import request_export

    with get_database().sessions() as session:
        export = request_export(session, requested_by, school_id=school_id,
                                issued_from=issued_from.date() if issued_from else None,
                                issued_until=issued_until.date() if issued_until else None, now=utcnow())
        session.commit()  # hands the job to the queue
        click.echo(f"export {export.id} queued; it will be stored as exports/certificates/{export.id}/ "
                   f"(`flask certificates export-link {export.id}` prints a download link when it is done)")


@certificates_cli.command("export-link")
@click.argument("export_id", type=int)
def certificates_export_link(export_id: int) -> None:
    """A link (valid for an hour) to a finished certificate export's zip."""
    from models import CertificateExport

    with get_database().readers() as session:
        export = session.get(CertificateExport, export_id)
        if export is None or not export.blob_key:
            state = export.status if export else "no such export"
            raise click.ClickException(f"export {export_id} is not finished ({state})")
        url = get_blob_store().signed_url(export.blob_key, 3600, filename=export.file_name,
                                          content_type="application/zip")
    click.echo(url if url.startswith("http") else str(current_app.config["PUBLIC_URL"]).rstrip("/") + url)


@certificates_cli.command("repair-signatures")
def certificates_repair_signatures() -> None:
    """Sign again the certificates whose channel changed before that re-signed them (their
    verify page said 签名无效 though they are genuine). Safe to run again."""
    import base64

    import certs
    from handlers.certificates.claims import repair_signatures

    seed = base64.b64decode(current_app.config["CERT_SIGNING_KEY"])
    public = certs.public_key(seed)
    with get_database().sessions() as session:
        repaired = repair_signatures(session, seed, {certs.key_id(public): public}, blobs=get_blob_store())
        session.commit()
    click.echo(f"{len(repaired)} signed again" + (": " + ", ".join(repaired) if repaired else ""))


jobs_cli = AppGroup("jobs", help="Background work (Huey).")


@jobs_cli.command("worker")
@click.option("--workers", default=2, show_default=True, help="Worker threads in this process.")
@click.option("--no-periodic", is_flag=True, help="Do not run the scheduler's periodic tasks here.")
def jobs_worker(workers: int, no_periodic: bool) -> None:
    """Run a Huey consumer: executes jobs, retries, sweeps and periodic work. Any number may run."""
    from jobs.queue import get_queue
    from telemetry import configure_logging

    configure_logging(current_app.config["LOG_JSON"], current_app.config["LOG_LEVEL"])
    _prepare_sqlite_dir(current_app.config["DATABASE_URL"])
    import logging

    import certs

    # Fonts and the PNG palette once, before the first job, not inside it (~0.2 s). Only
    # certificate rendering needs the font: without it every other job still runs.
    try:
        certs.warm_up()
    except Exception as exc:  # noqa: BLE001 - ReportLab's TTFError, an unreadable file, ...
        logging.getLogger("jobs").error(
            "certificate font not loaded (%s: %s): certificate rendering jobs will fail until it is "
            "installed (Debian: apt-get install fonts-wqy-zenhei); all other jobs run", type(exc).__name__, exc)
    queue = get_queue(current_app)
    stop = threading.Event()
    queue.start_sweeper(float(current_app.config["JOB_SWEEP_SECONDS"]), stop)
    try:
        queue.consumer(workers=workers, periodic=not no_periodic).run()
    finally:
        stop.set()


@jobs_cli.command("sweep")
def jobs_sweep() -> None:
    """Re-enqueue jobs that were recorded but are not running (what the periodic sweep does)."""
    from jobs.queue import get_queue

    click.echo(f"re-enqueued {get_queue(current_app).sweep()} job(s)")


@jobs_cli.command("failed")
@click.option("--limit", default=50, show_default=True)
def jobs_failed(limit: int) -> None:
    """List jobs that ran out of attempts, with their last error."""
    from handlers.outbox import list_failed_jobs

    with get_database().sessions() as session:
        for job in list_failed_jobs(session, limit):
            click.echo(f"{job.id}\t{job.kind}\tattempts={job.attempts}\t{job.finished_at:%Y-%m-%d %H:%M}\t"
                       f"{(job.last_error or '').splitlines()[-1] if job.last_error else ''}")


@jobs_cli.command("retry")
@click.argument("job_id", type=int)
def jobs_retry(job_id: int) -> None:
    """Give a failed job three more attempts."""
    from handlers.outbox import retry_failed_job

    with get_database().sessions() as session:
        job = retry_failed_job(session, job_id)
        if job is None:
            raise click.ClickException(f"no failed job {job_id}")
        session.commit()
    click.echo(f"job {job_id} queued again")


wechat_cli = AppGroup("wechat", help="The official account on WeChat's side.")


@wechat_cli.command("push-menu")
@click.option("--file", "path", default=None, help="Menu JSON (default: content/menu.json).")
def wechat_push_menu(path: str | None) -> None:
    """Validate the menu against WeChat's limits and publish it."""
    from wechat.menu import DEFAULT_MENU_PATH, MenuError, load_menu, push_menu
    from wechat.services import get_wechat_client

    try:
        menu = load_menu(path or DEFAULT_MENU_PATH)
    except MenuError as exc:
        raise click.ClickException(str(exc)) from exc
    from wechatpy.exceptions import WeChatClientException

    try:
        push_menu(get_wechat_client(current_app), menu)
    except WeChatClientException as exc:
        # One line an operator can act on (the errcode is WeChat's), not a traceback; exit 1.
        meaning = MENU_ERRCODES.get(exc.errcode, "")
        raise click.ClickException(f"WeChat refused the menu: errcode={exc.errcode} {exc.errmsg}"
                                   + (f" ({meaning})" if meaning else "")) from exc
    click.echo(f"menu published: {', '.join(b['name'] for b in menu['button'])}")


# What the errcodes an operator meets when publishing a menu mean (WeChat's documentation).
MENU_ERRCODES = {
    None: "could not reach WeChat: check WECHAT_API_BASE and the network",
    40001: "the access_token or AppSecret is wrong",
    40013: "the AppID is wrong",
    40164: "this server's IP address is not on the account's IP allowlist",
    48001: "the account is not authorised for the menu API (a verified service account is needed)",
    40016: "a menu has too many buttons",
    40017: "a sub-menu has too many buttons",
    40018: "a button name is too long",
    40054: "a button URL is invalid",
    45009: "the daily API limit is reached",
}


console_cli = AppGroup("console", help="Console accounts (platform admins, staff, school admins).")


@console_cli.command("create-account")
@click.argument("username")
@click.option("--role", type=click.Choice(["platform_admin", "staff", "school_admin"]), required=True)
@click.option("--display-name", default="")
@click.option("--school", "school_name", default=None, help="The school's name (school admins only).")
@click.password_option(envvar="XINWEI_NEW_PASSWORD", help="Asked for when not given (or XINWEI_NEW_PASSWORD).")
def console_create_account(username: str, role: str, display_name: str, school_name: str | None,
                           password: str) -> None:
    """Create a console account: how the first platform admin comes to exist."""
    from sqlalchemy import select

    from handlers.accounts.console import create_account
    from handlers.errors import Refused
    from models import School

    session = get_database().sessions()
    try:
        school_id = None
        if school_name:
            school_id = session.scalar(select(School.id).where(School.name == school_name))
            if school_id is None:
                raise click.ClickException(f"no school named {school_name}")
        try:
            account = create_account(session, username=username, password=password, role=role,
                                     display_name=display_name or username, school_id=school_id)
        except Refused as refused:
            raise click.ClickException(refused.message) from None
        session.commit()
        click.echo(f"console account {account.username} ({role}) created")
    finally:
        session.close()


schools_cli = AppGroup("schools", help="Schools: the console's counters.")


@schools_cli.command("recount")
@click.option("--school-id", type=int, default=None, help="Only this school (default: all).")
@click.option("--progress", "with_progress", is_flag=True,
              help="Also rebuild the students' progress rows from enrollments and attempts (the deploy backfill).")
def schools_recount(school_id: int | None, with_progress: bool) -> None:
    """Rebuild the school console's counters from scratch (and, with --progress, the progress rows)."""
    from handlers.learning.school_progress import rebuild_progress, recount

    with get_database().sessions() as session:
        rebuilt = rebuild_progress(session, school_id) if with_progress else None
        written = recount(session, school_id)
        session.commit()
    if rebuilt is not None:
        click.echo(f"progress rows rebuilt: {rebuilt}")
    click.echo(f"counters written: {written}")


def register(app: Flask) -> None:
    app.cli.add_command(console_cli)
    app.cli.add_command(db_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(content_cli)
    app.cli.add_command(certificates_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(wechat_cli)
    app.cli.add_command(schools_cli)
