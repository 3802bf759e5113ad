"""The ``actstore`` command line: one thin command per verb; the work lives in the modules."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from .errors import ActstoreError, Interrupted, OutputNotWritableError
from .location import Location


def _persistent(value: str | None) -> str | None:
    """Refuse a location that vanishes when the command exits (``memory://``): the Python API may use them."""
    from .location import is_ephemeral

    if value is not None and is_ephemeral(value):
        raise ActstoreError(f"{value}: a memory:// location lives only inside one process and would vanish when "
                            "this command exits; give a path or a persistent URL (s3://, gs://, file://...)")
    return value


def _plain(params: list[Any], ctx: Any) -> list[Any]:
    """Flags shown as flags (no ``<bool>`` value, no ``[default: False]``), repeatable options by the type of
    one value (``--layer <str>``, not ``<list[str]>``), arguments named in capitals."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
            if not param.secondary_opts:  # an on/off pair keeps its [default: on]
                param.show_default = False
        elif isinstance(param, TyperOption) and param.multiple and param.metavar is None:
            label = param.display_type(ctx)
            param.metavar = f"<{label[6:-2]}>" if label.startswith("<list[") else label
        elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
    return params


class _Command(TyperCommand):
    """A verb whose --help reads as users expect: ``--units``, not ``--units <bool>``; ``verify [OPTIONS] STORE``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx), ctx)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


class _Group(TyperGroup):
    """A group of verbs, its own --help shown as a flag too."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx), ctx)


class _App(typer.Typer):
    """A Typer app whose commands are :class:`_Command`."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or _Command, **kwargs)


app = _App(cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
           help="Extract activations once into chunked stores; select coresets; interpret; evaluate.")
catalog_app = _App(cls=_Group, no_args_is_help=True, help="List, show and remove catalog entries.")
app.add_typer(catalog_app, name="catalog")
coreset_app = _App(cls=_Group, no_args_is_help=True, help="List, show and export coresets.")
app.add_typer(coreset_app, name="coreset")


def _catalog_opt(what: str) -> Any:
    return typer.Option("--catalog", envvar="ACTSTORE_CATALOG", callback=_persistent,
                        help=f"{what}: a file or fsspec URL (default: <ACTSTORE_HOME>/catalog.yaml).")


# --catalog says what it does for each verb: verbs that make artifacts register them there (and look names up
# there), read-only verbs only look names up, `catalog rm/compact` change it.
CatalogOpt = Annotated[str | None, _catalog_opt("Where runs register what they make, and where names are looked up")]
ReadCatalogOpt = Annotated[str | None, _catalog_opt("The catalog to look names up in")]
ListCatalogOpt = Annotated[str | None, _catalog_opt("The catalog to list")]
EditCatalogOpt = Annotated[str | None, _catalog_opt("The catalog to change")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON data on stdout.")]
StoreArg = Annotated[str, typer.Argument(help="The store: its path, an fsspec URL (s3://, gs://...) or its name in "
                                              "the catalog.")]
SchedulerOpt = Annotated[str | None, typer.Option(
    help="Run as Dask tasks on: threads, processes, synchronous, or a distributed scheduler's address "
         "(tcp://host:8786). Default: this process's own stream.")]


def _emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=1, default=str))
    else:
        typer.echo(text if text is not None else json.dumps(data, indent=1, default=str))


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ActstoreError(f"{option} takes comma-separated numbers, not '{text}'") from None


@app.command()
def extract(
    model: Annotated[str, typer.Option(help="Model: catalog name, demo-resnet, demo-vgg or a torchvision builder.")],
    dataset: Annotated[str, typer.Option(help="digits[:train|val], imagefolder:PATH, synthetic:n=..., or a catalog name.")],
    out: Annotated[str | None, typer.Option(callback=_persistent, help="Store path or fsspec URL, e.g. s3://bucket/x.zarr (default: under ACTSTORE_HOME/stores).")] = None,
    layer: Annotated[list[str] | None, typer.Option(help="Layer node name; repeat for several (default: last conv block).")] = None,
    units: Annotated[bool, typer.Option("--units", help="Also store VEBI unit features over every ReLU call.")] = False,
    weights: Annotated[str | None, typer.Option(help="State-dict file, weights enum name (local cache only) or 'random'.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Stored dtype of the maps: float16 or float32.")] = "float16",
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes (default: 0 for in-memory data).")] = None,
    block_rows: Annotated[int | None, typer.Option(help="Rows per chunk (default: ~8 MB chunks).")] = None,
    name: Annotated[str | None, typer.Option(help="Catalog name of the store.")] = None,
    resize: Annotated[int | None, typer.Option(help="imagefolder: resize the short side (replaces the weights' transforms).")] = None,
    crop: Annotated[int | None, typer.Option(help="imagefolder: centre crop (default: --resize).")] = None,
    mean: Annotated[str, typer.Option(help="imagefolder: normalisation mean, 3 comma-separated values.")] = "0.485,0.456,0.406",
    std: Annotated[str, typer.Option(help="imagefolder: normalisation std, 3 comma-separated values.")] = "0.229,0.224,0.225",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an actstore store with other provenance at --out (never anything else).")] = False,
    fingerprint: Annotated[str, typer.Option(help="imagefolder: recognise the images by name, size and mtime (stat) or also by a hash of their bytes (content: reads them all).")] = "stat",
    allow_nonfinite: Annotated[bool, typer.Option("--allow-nonfinite", help="Keep NaN/Inf activations (counted in the provenance) instead of stopping.")] = False,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract a model's activations over a dataset into a store (resumes if interrupted)."""
    from .extract import extract as run
    from .extract.datasets import make_transform

    transform = preprocessing = None
    if resize is not None or crop is not None:
        size = resize or crop
        assert size is not None
        transform, preprocessing = make_transform(size, crop or size, _floats(mean, "--mean"), _floats(std, "--std"))
    _writable_catalog(catalog)
    result = run(model, dataset, out, layers=layer, units=units, weights=weights, batch_size=batch_size,
                 device=device, dtype=dtype, workers=workers, overwrite=overwrite, catalog=catalog,
                 block_rows=block_rows, name=name, transform=transform, preprocessing=preprocessing,
                 progress=not as_json, fingerprint=fingerprint, allow_nonfinite=allow_nonfinite)
    if result.note and as_json:  # without --json the extractor said it already
        typer.echo(result.note, err=True)
    data = {"path": str(result.path), "name": result.name, "reused": result.reused,
            "resumed_blocks": result.resumed_blocks, "written_blocks": result.written_blocks,
            "out_written": result.note is None}
    _emit(data, as_json, str(result.path))


def _writable_catalog(catalog: str | None) -> None:
    """Fail before any work when the catalog a command registers into cannot be written."""
    from .catalog import open_catalog

    open_catalog(catalog).check_writable()


@app.command()
def info(
    store: Annotated[str | None, typer.Argument(help="The store to describe: its path, an fsspec URL or its name in "
                                                     "the catalog.")] = None,
    model: Annotated[str | None, typer.Option(help="Describe a model instead (a catalog name, demo-resnet, demo-vgg "
                                                   "or a torchvision builder): its layers and shapes.")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights for --model (default: random init, no loading).")] = None,
    catalog: ReadCatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Describe a store (layers, shapes, classes, rows, size, provenance) or a model's layers."""
    from .describe import describe_model, describe_store, format_model, format_store

    if (store is None) == (model is None):
        raise ActstoreError("give either a STORE path or --model NAME")
    if model is not None:
        data = describe_model(model, weights, catalog)
        _emit(data, as_json, format_model(data))
    else:
        assert store is not None
        data = describe_store(_store_path(store, catalog))
        _emit(data, as_json, format_store(data))


@app.command()
def verify(
    store: Annotated[str, typer.Argument(help="The store to check: its path, an fsspec URL or its name in the "
                                              "catalog.")],
    catalog: ReadCatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every ledger block, chunk and shape of a store; exit 2 if anything is wrong."""
    from .store import verify_store

    report = verify_store(_store_path(store, catalog))
    data = {"path": report.path, "ok": report.ok, "chunks_checked": report.chunks_checked,
            "problems": report.problems}
    text = (f"ok: {report.path} ({report.chunks_checked} chunks checked)" if report.ok else
            "\n".join([f"{report.path}: {len(report.problems)} problem(s)", *report.problems]))
    data["notes"] = report.notes
    text += "".join(f"\nnote: {n}" for n in report.notes)
    if report.ok:
        _emit(data, as_json, text)
        return
    if as_json:
        _emit(data, True)
    else:
        typer.echo(text, err=True)
    raise typer.Exit(2)


@catalog_app.command("ls")
def catalog_ls(
    kind: Annotated[str | None, typer.Argument(help="datasets, models, stores, coresets, features or results.")] = None,
    catalog: ListCatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List catalog entries (the run catalog and the project's known datasets and models)."""
    from .catalog import KINDS, Catalog, open_catalog
    from .config import repo_catalog_path

    cat = open_catalog(catalog)
    kinds = [kind] if kind else list(KINDS)
    repo = repo_catalog_path()
    mine = cat.path.resolve() if isinstance(cat.path, Path) else None
    sources = [cat] + ([Catalog.load(repo)] if repo and repo.resolve() != mine else [])
    rows = []
    for k in kinds:
        seen = set()
        for source in sources:
            for name, entry in source.entries(k).items():
                if name in seen:
                    continue
                seen.add(name)
                what = entry.get("path") or entry.get("spec") or entry.get("builder")
                rows.append({"kind": k, "name": name, "what": what, "catalog": str(source.path)})
    problems = cat.problems()
    lines = [f"{r['kind']:<9} {r['name']:<40} {r['what']}" for r in rows] or ["(empty)"]
    lines += [f"stale: {p}" for p in problems]
    _emit({"entries": rows, "stale": problems}, as_json, "\n".join(lines))


@catalog_app.command("show")
def catalog_show(
    kind: Annotated[str, typer.Argument(help="Entry kind, e.g. stores.")],
    name: Annotated[str, typer.Argument(help="Entry name.")],
    catalog: ReadCatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one entry with its provenance (datasets and models: also the project's)."""
    import yaml

    from .catalog import get_entry

    entry = get_entry(kind, name, catalog)

    _emit(entry, as_json, yaml.safe_dump({name: entry}, sort_keys=False).rstrip())


@catalog_app.command("rm")
def catalog_rm(
    kind: Annotated[str, typer.Argument(help="Entry kind, e.g. stores.")],
    name: Annotated[str, typer.Argument(help="Entry name.")],
    delete: Annotated[bool, typer.Option("--delete", help="Also delete the artifact on disk.")] = False,
    catalog: EditCatalogOpt = None,
) -> None:
    """Remove an entry from the catalog (and with --delete, the artifact it names, if it provably is that one)."""
    from .catalog import open_catalog
    from .ownership import remove_artifact

    cat = open_catalog(catalog)
    entry = cat.get(kind, name)
    path = cat.resolve(entry) if "path" in entry else None
    if delete and path is not None:
        remove_artifact(kind, path, str(entry.get("key", "")), check_only=True)  # refused: nothing changes
    cat.remove(kind, name)
    if delete and path is not None:
        remove_artifact(kind, path, str(entry.get("key", "")))
    typer.echo(f"removed {kind}.{name}" + (f" and deleted {path}" if delete and path else ""))


@catalog_app.command("compact")
def catalog_compact(catalog: EditCatalogOpt = None) -> None:
    """Fold the catalog's journal of recent changes into its YAML now (done by itself as the journal grows)."""
    from .catalog import open_catalog

    cat = open_catalog(catalog)
    cat.compact()
    typer.echo(f"compacted {cat.path}")


def _store_path(store: str, catalog: str | None) -> Location:
    """A store given by path or URL, or by its name in the catalog."""
    from .catalog import resolve

    where = resolve("stores", store, catalog).location
    assert where is not None
    return where


def _params(items: list[str] | None) -> dict[str, Any]:
    """``--param key=value`` items, each value read as YAML (numbers, lists, true/false); checked by the method."""
    import yaml

    from .yamlio import load_yaml, one_line

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ActstoreError(f"--param takes key=value, got '{item}'")
        try:
            out[key.strip()] = load_yaml(value) if value else ""
        except yaml.YAMLError as exc:
            raise ActstoreError(f"--param {item}: not a value ({one_line(exc)})") from None
    return out


@app.command()
def select(
    store: StoreArg,
    method: Annotated[str, typer.Option(help="random, moderate, dgpruning, d2pruning, kcenter.")],
    rate: Annotated[list[float] | None, typer.Option(help="Fraction kept per class; repeat for several (one pass).")] = None,
    paper_rates: Annotated[bool, typer.Option("--paper-rates", help="The paper's grid: 0.05 0.1 0.2 0.3 0.4 0.5 0.95.")] = False,
    layer: Annotated[str | None, typer.Option(help="Layer whose pooled activations are used (default: the last).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random draws.")] = 0,
    param: Annotated[list[str] | None, typer.Option(help="Selector parameter key=value, e.g. k=5, gamma_r=0.1, scores=aum.csv.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Where coreset files go (default: ACTSTORE_HOME/coresets).")] = None,
    jobs: Annotated[int | None, typer.Option(help="Classes selected in parallel (default: CPU count).")] = None,
    scheduler: SchedulerOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Select coresets from a store's pooled activations: one per rate, from one pass."""
    from .coresets.select import PAPER_RATES, save_coreset, select_many

    rates = list(PAPER_RATES) if paper_rates else list(rate or [])
    if not rates:
        raise ActstoreError("give --rate R (repeatable) or --paper-rates")
    if jobs is not None and jobs < 1:
        raise ActstoreError(f"--jobs must be >= 1 (classes selected at once), not {jobs}")
    _writable_catalog(catalog)
    coresets = select_many(_store_path(store, catalog), method, rates, layer=layer, seed=seed, n_jobs=jobs,
                           progress=not as_json, scheduler=scheduler, **_params(param))
    rows = []
    for cs in coresets:
        name, path = save_coreset(cs, catalog, out_dir)
        rows.append({"name": name, "path": str(path), "rate": cs.rate, "n": cs.n, "key": cs.key})
    _emit(rows, as_json, "\n".join(f"{r['name']}  rate {r['rate']:g}  {r['n']} samples  {r['path']}" for r in rows))


def _coreset(name: str, catalog: str | None) -> Any:
    """A coreset given by file or by its name in the catalog."""
    from .catalog import resolve
    from .coresets.artifact import Coreset

    where = resolve("coresets", name, catalog).location
    assert where is not None
    return Coreset.load(where)


@coreset_app.command("ls")
def coreset_ls(catalog: ListCatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List the coresets in the catalog."""
    from .catalog import open_catalog

    cat = open_catalog(catalog)
    rows = [{"name": n, **e.get("provenance", {}), "path": e["path"]} for n, e in cat.entries("coresets").items()]
    lines = [f"{r['name']:<50} {r.get('method', '?'):<10} rate {r.get('rate', '?'):<5} n {r.get('n', '?')}"
             for r in rows] or ["(no coresets)"]
    _emit(rows, as_json, "\n".join(lines))


@coreset_app.command("show")
def coreset_show(
    name: Annotated[str, typer.Argument(help="Coreset catalog name or file.")],
    catalog: ReadCatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a coreset: selector, parameters, rate, seed, source store and per-class counts."""
    cs = _coreset(name, catalog)
    data = {k: v for k, v in cs.to_dict().items() if k != "ids"}
    text = "\n".join([f"method   {cs.method}  params {cs.params}", f"rate     {cs.rate:g}  seed {cs.seed}  "
                      f"layer {cs.layer}  n {cs.n}", f"store    {cs.store_path} (key {cs.store_key})",
                      f"dataset  {cs.fingerprint}",
                      "counts   " + ", ".join(f"{c}:{n}" for c, n in list(cs.counts().items())[:30])])
    _emit(data, as_json, text)


@coreset_app.command("export")
def coreset_export(
    name: Annotated[str, typer.Argument(help="Coreset catalog name or file.")],
    format: Annotated[str, typer.Option("--format", help="csv (id,class) or json.")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    catalog: ReadCatalogOpt = None,
) -> None:
    """Export a coreset's sample ids as CSV (id,class) or JSON."""
    cs = _coreset(name, catalog)
    if format == "csv":
        lines = ["id,class"] + [f"{i},{cs.classes[c]}" for c, ids in sorted(cs.ids_by_class.items()) for i in ids]
        text = "\n".join(lines) + "\n"
    elif format == "json":
        text = json.dumps({cs.classes[c]: ids.tolist() for c, ids in sorted(cs.ids_by_class.items())}) + "\n"
    else:
        raise ActstoreError(f"--format must be csv or json, not '{format}'")
    if out is None:
        sys.stdout.write(text)
    else:
        from .atomic import atomic_write_text

        atomic_write_text(out, text, what="the exported coreset")


@app.command()
def interpret(
    store: StoreArg,
    method: Annotated[str, typer.Option(help="ice, vebi or topic.")],
    coreset: Annotated[list[str] | None, typer.Option(help="Coreset name or file; repeat for several (one read).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Also on all rows (the default without --coreset).")] = False,
    layer: Annotated[str | None, typer.Option(help="ICE, topic: layer of the maps (default: the store's last).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Hyperparameter key=value, e.g. mu=0.001, n_components=10.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Where features go (default: ACTSTORE_HOME/features).")] = None,
    scheduler: SchedulerOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run an interpreter on a store, on coresets' rows and/or all rows; save and register its R."""
    from .catalog import open_catalog
    from .interpret.run import interpret as run
    from .interpret.run import save_features

    cat = open_catalog(catalog)
    cat.check_writable()
    coresets = [_coreset(c, catalog) for c in coreset or []]
    results = run(_store_path(store, catalog), method, coresets=coresets, full=full or not coresets, layer=layer,
                  scheduler=scheduler, progress=not as_json, **_params(param))
    rows = []
    for f in results:
        name, path = save_features(f, cat, out_dir)
        rows.append({"name": name, "path": str(path), "method": f.method, "coreset": f.coreset, "key": f.key})
    _emit(rows, as_json, "\n".join(f"{r['name']}  {r['path']}" for r in rows))


@app.command()
def experiment(
    config: Annotated[Path, typer.Argument(help="Experiment config (YAML): models, interpreters, selectors, rates...")],
    catalog: CatalogOpt = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write the report.")] = True,
    scheduler: SchedulerOpt = None,
    estimate: Annotated[bool, typer.Option("--estimate", help="Print the plan (artifacts to compute and to reuse) "
                                           "and its estimated time, disk and memory per stage; run nothing.")] = False,
    recalibrate: Annotated[bool, typer.Option("--recalibrate", help="With --estimate: measure this machine's "
                                              "per-unit costs again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run (or resume) the grid models x interpreters x selectors x rates x seeds; write results.csv."""
    from .evaluate.config import ExperimentConfig
    from .evaluate.experiment import run_experiment
    from .report import write_report

    cfg = ExperimentConfig.load(config, catalog)
    if scheduler is not None:
        cfg.scheduler = scheduler
        cfg.check(catalog)
    if estimate:
        from .catalog import open_catalog
        from .evaluate.estimate import estimate as plan_cost, format_estimate

        est = plan_cost(cfg, open_catalog(catalog), refresh=recalibrate)
        _emit(est, as_json, format_estimate(est))
        return
    _writable_catalog(catalog)
    results = run_experiment(cfg, catalog, progress=not as_json)
    page = write_report(results) if report else None
    _emit({"results": str(results), "report": str(page) if page else None}, as_json,
          f"results: {results}" + (f"\nreport:  {page}" if page else ""))


@app.command("report")
def report_cmd(
    results: Annotated[str, typer.Argument(help="results.csv written by actstore experiment, or its name in the "
                                                "catalog.")],
    out_dir: Annotated[Path | None, typer.Option(help="Where to write (default: beside the results).")] = None,
    catalog: ReadCatalogOpt = None,
) -> None:
    """Write Table 1 (Markdown, CSV), the figures and a self-contained HTML report (with the experiment's heatmaps)."""
    from .catalog import resolve
    from .report import write_report

    where = resolve("results", results, catalog).location
    if not isinstance(where, Path):
        raise ActstoreError(f"{where}: the report reads a local results.csv; copy it here first")
    try:
        page = write_report(where, out_dir)
    except OSError as exc:
        raise _write_failure(exc, "the report", "the results file is untouched: rerun the same command once the "
                             "location is writable") from None
    typer.echo(str(page))


@app.command()
def demo(
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the embedded default: the whole experiment on digits with the two demo models, and its report."""
    from .demo.run import format_summary, run_demo

    summary = run_demo(catalog=catalog, progress=not as_json)
    _emit(summary, as_json, format_summary(summary))


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _write_failure(exc: OSError, what: str, hint: str = "") -> OutputNotWritableError:
    from .atomic import os_error

    return os_error(exc, exc.filename or "?", what, hint)


def _on_sigint(signum: int, frame: Any) -> None:
    raise Interrupted


def _interrupted() -> None:
    _settle_pending_io()
    typer.echo("interrupted: rerun the same command to resume (finished work is kept)", err=True)
    sys.exit(130)


def _settle_pending_io() -> None:
    """zarr reads chunks as concurrent tasks on its own event loop; when one fails, its siblings are
    still pending at exit, and asyncio reports each one destroyed ("Task was destroyed but it is
    pending!", "Event loop is closed") after our one-line error. Cancel and await them first."""
    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0] if sync is not None else None
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    import asyncio
    import contextlib

    async def settle() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(settle(), loop).result(timeout=5)


def main() -> None:
    """Entry point: typed errors become one line on stderr and exit code 2; Ctrl-C exits 130 with a line
    saying how to resume; a full disk or a read-only location met by code that did not say so itself
    becomes the same one-line error."""
    import signal

    signal.signal(signal.SIGINT, _on_sigint)
    try:
        code = app(prog_name="actstore", standalone_mode=False)  # click returns typer.Exit's code instead of raising it
        sys.exit(code if isinstance(code, int) else 0)
    except ActstoreError as exc:
        _settle_pending_io()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, Interrupted):
        _interrupted()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            _interrupted()
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        _settle_pending_io()
        typer.echo(f"error: {_write_failure(exc, 'a file')}", err=True)
        sys.exit(2)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors (vendored by typer)
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
