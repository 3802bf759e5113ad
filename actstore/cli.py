"""The ``actstore`` command line: one thin command per verb; the work lives in the modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ActstoreError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Extract activations once into chunked stores; select coresets; interpret; evaluate.")
catalog_app = typer.Typer(no_args_is_help=True, help="List, show and remove catalog entries.")
app.add_typer(catalog_app, name="catalog")

CatalogOpt = Annotated[Path | None, typer.Option(
    "--catalog", envvar="ACTSTORE_CATALOG",
    help="Catalog that runs register into (default: <ACTSTORE_HOME>/catalog.yaml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON data on stdout.")]


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
    out: Annotated[Path | None, typer.Option(help="Store path (default: under ACTSTORE_HOME/stores).")] = None,
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a store with other provenance at --out.")] = False,
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
    result = run(model, dataset, out, layers=layer, units=units, weights=weights, batch_size=batch_size,
                 device=device, dtype=dtype, workers=workers, overwrite=overwrite, catalog=catalog,
                 block_rows=block_rows, name=name, transform=transform, preprocessing=preprocessing,
                 progress=not as_json)
    data = {"path": str(result.path), "name": result.name, "reused": result.reused,
            "resumed_blocks": result.resumed_blocks, "written_blocks": result.written_blocks}
    _emit(data, as_json, str(result.path))


@app.command()
def info(
    store: Annotated[Path | None, typer.Argument(help="A store to describe.")] = None,
    model: Annotated[str | None, typer.Option(help="Describe a model instead: its layers and shapes.")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights for --model (default: random init, no loading).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Describe a store (layers, shapes, classes, rows, size, provenance) or a model's layers."""
    from .describe import describe_model, describe_store, format_model, format_store

    if (store is None) == (model is None):
        raise ActstoreError("give either a STORE path or --model NAME")
    if model is not None:
        data = describe_model(model, weights)
        _emit(data, as_json, format_model(data))
    else:
        assert store is not None
        data = describe_store(store)
        _emit(data, as_json, format_store(data))


@app.command()
def verify(
    store: Annotated[Path, typer.Argument(help="The store to check.")],
    as_json: JsonOpt = False,
) -> None:
    """Check every ledger block, chunk and shape of a store; exit 2 if anything is wrong."""
    from .store import verify_store

    report = verify_store(store)
    data = {"path": report.path, "ok": report.ok, "chunks_checked": report.chunks_checked,
            "problems": report.problems}
    text = (f"ok: {report.path} ({report.chunks_checked} chunks checked)" if report.ok else
            "\n".join([f"{report.path}: {len(report.problems)} problem(s)", *report.problems]))
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
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List catalog entries (the run catalog and the project's known datasets and models)."""
    from .catalog import KINDS, Catalog, open_catalog
    from .config import repo_catalog_path

    cat = open_catalog(catalog)
    kinds = [kind] if kind else list(KINDS)
    repo = repo_catalog_path()
    sources = [cat] + ([Catalog.load(repo)] if repo and repo.resolve() != cat.path.resolve() else [])
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
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one entry with its provenance."""
    from .catalog import lookup, open_catalog

    cat = open_catalog(catalog)
    entry = lookup(kind, name, cat) if kind in ("datasets", "models") else None
    entry = entry if entry is not None else cat.get(kind, name)
    import yaml

    _emit(entry, as_json, yaml.safe_dump({name: entry}, sort_keys=False).rstrip())


@catalog_app.command("rm")
def catalog_rm(
    kind: Annotated[str, typer.Argument(help="Entry kind, e.g. stores.")],
    name: Annotated[str, typer.Argument(help="Entry name.")],
    delete: Annotated[bool, typer.Option("--delete", help="Also delete the artifact on disk.")] = False,
    catalog: CatalogOpt = None,
) -> None:
    """Remove an entry from the catalog (and with --delete, its files)."""
    import shutil

    from .catalog import open_catalog

    cat = open_catalog(catalog)
    entry = cat.get(kind, name)
    path = cat.resolve(entry) if "path" in entry else None
    cat.remove(kind, name)
    if delete and path is not None and path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    typer.echo(f"removed {kind}.{name}" + (f" and deleted {path}" if delete and path else ""))


@app.command()
def demo(
    catalog: CatalogOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 128,
    as_json: JsonOpt = False,
) -> None:
    """Run the embedded default: train (once) the two demo models on digits and extract their stores."""
    from .demo.run import format_summary, run_demo

    summary = run_demo(catalog=catalog, batch_size=batch_size, progress=not as_json)
    _emit(summary, as_json, format_summary(summary))


def main() -> None:
    """Entry point: typed errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code instead of raising it
        sys.exit(code if isinstance(code, int) else 0)
    except ActstoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors (vendored by typer)
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
