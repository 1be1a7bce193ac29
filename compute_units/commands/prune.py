"""The `prune` command: remove local images no service runs and no rollback could need."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CommandError, ComputeUnitsError, ExitCode
from ..jobs import require_root
from ..prune import Decision, ImageStore, PodmanImages, plan
from .common import Context, JsonOpt, SpecOpt, emit_json, make_context, out, reporting

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")]


class PruneFailed(ComputeUnitsError):
    exit_code = ExitCode.FAILED


def prune(specs: SpecOpt = None, dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Remove images of the services' repositories that no service runs and no rollback could need.

    Kept: images a container uses, images a spec names, what state.json names (the running pin,
    an unfinished upgrade's target and previous image, a pre-pulled target) and every image the
    history says a rollback could return to. Removed: the rest of those repositories, e.g. the
    target of an upgrade that was rolled back. Images of other repositories are left alone, and so
    is an image that also carries a name of another repository.
    Runs under the upgrade lock: never while an upgrade is pulling.
    """
    with reporting(as_json):
        ctx = make_context(specs, Path("/"), None)
        if not dry_run:
            require_root("prune")
        run_prune(ctx, PodmanImages(), dry_run=dry_run, as_json=as_json)


def run_prune(ctx: Context, images: ImageStore, *, dry_run: bool, as_json: bool) -> list[Decision]:
    services, _ = ctx.load()
    store = ctx.store()
    with store.lock(0.0):
        decisions = plan(images.images(), services, store.load(), store.history())
        removed, failed = [], []
        for decision in decisions:
            if decision.keep or dry_run:
                continue
            try:
                images.remove(decision.image)
                removed.append(decision)
            except CommandError as exc:
                failed.append((decision, exc.message))
    if as_json:
        emit_json(
            {
                "ok": not failed,
                "dry_run": dry_run,
                "images": [d.as_dict() for d in decisions],
                "removed": [d.image.id for d in removed],
                "freed": sum(d.image.size for d in removed),
                "errors": [{"id": d.image.id, "error": message} for d, message in failed],
            }
        )
    else:
        _print(decisions, removed, dry_run)
    if failed:
        names = ", ".join(_name(d) for d, _ in failed)
        raise PruneFailed(f"could not remove {names}: {failed[0][1]}", hint="podman images; podman rmi ID")
    return decisions


def _name(decision: Decision) -> str:
    image = decision.image
    return (image.tags or image.digests or (image.id[:12],))[0]


def _print(decisions: list[Decision], removed: list[Decision], dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for d in decisions:
        out.print(f"{'keep' if d.keep else verb:>12}  {_name(d)}  ({d.reason})", markup=False)
    gone = [d for d in decisions if not d.keep] if dry_run else removed
    size = sum(d.image.size for d in gone) / 1e6
    out.print(
        f"{len(gone)} image(s) {verb} ({size:.1f} MB), {sum(d.keep for d in decisions)} kept", markup=False
    )
