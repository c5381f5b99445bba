"""``mixopt swarm``: the swarm of mixtures a search would train, as a ratios table (and a data
config per run), for users who train the proxies on their own cluster and fit afterwards."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from mixopt.cli import app
from mixopt.cli.common import (
    MAX_SEED,
    FixOpt,
    MaxEpochsOpt,
    MaxWeightOpt,
    MinWeightOpt,
    TargetTokensOpt,
    assignments,
    err_console,
    in_path,
    opt,
    out_file,
    out_folder,
    parse_budget,
    recompute_opt,
)

Str = str | None


@app.command("swarm")
def swarm(
    corpus: Annotated[Str, opt("--corpus", "-c", help="Built corpus name or folder (its domains and "
                                                      "token counts).")] = None,
    domains: Annotated[Str, opt("--domains", help="Domains a,b,c (without a corpus), or @FILE of them, "
                                                  "one per line.")] = None,
    tokens: Annotated[Str, opt("--tokens", help="Tokens per domain a=1e9,b=2B,c=500M, or @FILE (the prior "
                                                "and the repetition cap).")] = None,
    budget: Annotated[int, opt("--budget", "-b", help="Mixtures to draw (32, 1e3, 1k).", parser=parse_budget,
                               metavar="N")] = 32,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the swarm: a search "
                                      "with the same options and seed trains the same mixtures.")] = 0,
    temperature: Annotated[float, opt("--temperature", help="Temperature T of the prior, token shares ** "
                                      "(1/T) (as in `mixopt search`).")] = 1.0,
    min_weight: MinWeightOpt = 0.0,
    max_weight: MaxWeightOpt = None,
    fix: FixOpt = None,
    max_epochs: MaxEpochsOpt = None,
    target_tokens: TargetTokensOpt = None,
    extend: Annotated[Path | None, opt("--extend", help="A ratios table of mixtures already planned or "
                                       "run: the new ones keep away from them and number on after "
                                       "them.", parser=in_path)] = None,
    out: Annotated[Path | None, opt("--out", "-o", help="Write the ratios table (CSV: run, index and a "
                                    "weight per domain) here instead of stdout.", parser=out_file)] = None,
    exports: Annotated[Path | None, opt("--exports", help="Also write each mixture as --format into this "
                                        "new folder, one file per run, named by its run.",
                                        parser=out_folder)] = None,
    fmt: Annotated[Str, opt("--format", "-f", help="Format of --exports: megatron, hf, olmix, olmix-mix or "
                            "yaml (as `mixopt export`).")] = None,
    prefix: Annotated[list[str] | None, opt("--prefix", help="--exports: a domain's name or path in the "
                                            "training job, domain=path (repeatable, a=/x,b=/y, or "
                                            "@FILE).")] = None,
    valid: Annotated[list[str] | None, opt("--valid", help="--exports in yaml: a validation set of RegMix's "
                                           "valid: section, name=weight (repeatable).")] = None,
    reuse: Annotated[Str, opt("--reuse-mixture", help="Mixture reuse (Olmix): MIXTURE.json or "
                              "NAME=MIXTURE.json, whose domains are drawn as one group NAME (default "
                              "reused) at that mixture's shares; the rows are written over every "
                              "domain.")] = None,
    recompute: Annotated[Str, recompute_opt("to draw")] = None,
) -> None:
    """Draw the swarm of mixtures to train yourself: a ratios table for `mixopt fit`."""
    from mixopt.atomic import atomic_dir, check_can_create, check_writable, refuse_holding_cwd, write_text
    from mixopt.errors import MixoptError
    from mixopt.export import EXTENSIONS, export_mixture, export_notes, parse_prefixes
    from mixopt.mixture import Mixture
    from mixopt.reuse import reuse_path
    from mixopt.search.config import SearchConfig, at_file, count_text, parse_assignments, parse_domains
    from mixopt.search.prepare import swarm_plan
    from mixopt.tables import SWARM_RUN, extension_csv, ratios_csv

    if corpus is None and domains is None:
        raise MixoptError("give --corpus NAME, or --domains a,b,c (with --tokens for a prior and a "
                          "repetition cap)")
    if (exports is None) != (fmt is None):
        raise MixoptError("--exports and --format go together: a folder for the files and their format, "
                          "e.g. --exports blends --format megatron")
    if (prefix or valid) and exports is None:
        raise MixoptError(f"{'--prefix' if prefix else '--valid'} goes into --exports files; add --exports "
                          "FOLDER --format F")
    if extend is not None and str(extend) != "-" and extend.exists() and not extend.is_dir() \
            and not extend.is_file():
        # read for its rows, its numbering and its last line, and appended to by the user after: a pipe
        # had been read empty the second time, with a traceback and a table of blank lines
        raise MixoptError(f"--extend {extend} is a pipe or a device; give the table as a file (it is read "
                          "more than once, and the new rows are appended to it)")
    if extend is not None and str(extend) == "-":
        raise MixoptError("--extend - would read the table from standard input; give it as a file (it is "
                          "read more than once, and the new rows are appended to it)")
    if out is not None:  # nor the mixture it reuses (a QA pass wrote the table over it)
        check_writable(out, example="swarm.csv",
                       inputs={"--extend": extend, "--reuse-mixture": reuse_path(reuse) if reuse else None})
    if exports is not None:
        refuse_holding_cwd(exports, "--exports", "blends")  # ".", or a folder above it (out_folder: "")
        if exports.exists() and (not exports.is_dir() or any(exports.iterdir())):
            raise MixoptError(f"--exports {exports} exists and is not an empty folder; give a new folder")
        if fmt not in EXTENSIONS:
            raise MixoptError(f"--format {fmt!r} is unknown; choose one of {', '.join(EXTENSIONS)}")
        # said now and by its option, not after the draw (a QA pass: "cannot write in /proc", after
        # a screen of notes on the files it could not write)
        check_can_create(exports, "--exports")
        folder = exports.expanduser().resolve()
        if out is not None and (table := out.expanduser().resolve()).is_relative_to(folder):
            # the folder is published whole, over what was written in its place (a QA pass: -o equal
            # to it failed after the files were published, and left them)
            where = "the --exports folder" if table == folder else f"inside the --exports folder {exports}"
            raise MixoptError(f"--out {out} is {where}, which is written whole; give the table a path of "
                              "its own, such as swarm.csv beside the folder")
    config = SearchConfig(
        corpus=corpus, domains=parse_domains(domains),
        tokens=parse_assignments(tokens, option="--tokens", counts=True) or None, budget=budget, seed=seed,
        temperature=temperature, min_weight=min_weight, max_weight=assignments(max_weight, "--max-weight"),
        fix=assignments(fix, "--fix"), max_epochs=max_epochs, target_tokens=target_tokens,
        reuse_mixture=reuse, recompute=parse_domains(recompute, "--recompute") or (),
    )
    space, rows, start, group, domain_tokens = swarm_plan(config, extend=extend)
    # what a search's mixture records of its space, from which olmix-mix sets each domain's
    # repetition factor (a QA pass: 1.0 for a row 13 passes over math)
    params: dict[str, Any] = {"constraints": space.constraints()}
    names, planner = space.domains, space
    if group is not None:  # the jobs train the domains: the rows are written over them, not the units
        names, rows = group.domains(space.domains), group.expand(space.domains, rows)
        planner, params["reuse"] = group.plan_space(space, domain_tokens), group.as_dict()
    # below an --extend table: its columns, in its order (the rows are appended to it)
    text = (ratios_csv(names, rows, start=start) if extend is None else
            extension_csv(extend, names, rows, start=start))
    if exports is not None:
        prefixes = parse_prefixes([at_file(p, "--prefix") or "" for p in prefix or []], names)
        valid_sets = assignments(valid, "--valid")
        files, noted = {}, {}
        for i, row in enumerate(rows, start=start):
            mix = Mixture(dict(zip(names, map(float, row), strict=True)),
                          meta={"params": params, "tokens": planner.token_plan(row)})
            files[f"{SWARM_RUN.format(i)}.{EXTENSIONS[fmt]}"] = export_mixture(mix, fmt, prefixes, valid_sets)
            for note in export_notes(mix, fmt, valid_sets, prefixes):
                noted.setdefault(note, []).append(SWARM_RUN.format(i))
        for note, runs in noted.items():  # each once, with the runs it is about
            which = "every run" if len(runs) == len(rows) else ", ".join(runs[:3]) + (
                f" and {len(runs) - 3} more" if len(runs) > 3 else "")
            err_console.print(f"note ({which}): {note}", markup=False, soft_wrap=True)
        with atomic_dir(exports) as tmp:
            for name, body in files.items():
                (tmp / name).write_text(body, encoding="utf-8")
            if out is not None:  # in the block: a table that cannot be written leaves no folder of files
                write_text(out, text)
    if out is None:
        typer.echo(text, nl=False)
    elif exports is None:
        write_text(out, text)
    said = f"{len(rows)} mixture{'s' if len(rows) != 1 else ''} over {len(names)} domains (seed {seed})"
    if group is not None:
        said += (f", {len(group.ratios)} of them as one group {group.name} at the shares of {group.source} "
                 f"({space.n} units drawn)")
    done = f"wrote {said} to {out}" if out is not None else f"drew {said}"
    also = f", and one {fmt} file per run to {exports}" if exports is not None else ""
    table = str(out) if out is not None else "SWARM.csv"
    if extend is not None:  # fit takes one ratios table: the new rows go below the first table's
        append = f"{shlex.join(['tail', '-n', '+2', table])} >> {shlex.quote(str(extend))}"
        with Path(extend).open("rb") as f:  # no newline at its end: the first new row would join its last
            if f.seek(0, 2) and (f.seek(-1, 2), f.read(1))[1] not in (b"\n", b"\r"):
                append = f"echo >> {shlex.quote(str(extend))} && {append}"
        also += (f"; they number on after {extend}'s rows, in its columns: append them to it ({append}) and "
                 "fit the whole")
        table = str(extend)
    # the swarm's space, so that the proposal keeps to it (a QA pass: without them it went past a cap)
    space_opts = ["--min-weight", f"{min_weight:g}"] if min_weight else []
    if domain_tokens is not None and (max_epochs is not None or tokens is not None):
        space_opts += ["--tokens", tokens if tokens is not None else
                       ",".join(f"{d}={t:g}" for d, t in domain_tokens.items())]
    for option, value in (("--max-epochs", max_epochs), ("--target-tokens", target_tokens)):
        if value is not None:
            space_opts += [option, count_text(value)]
    for option, values in (("--fix", fix), ("--max-weight", max_weight)):
        for v in values or []:
            space_opts += [option, v]
    if group is not None:  # fit draws the group's shares from the same file
        space_opts += group.option()
    command = shlex.join(["mixopt", "fit", "--ratios", table, "--metrics", "METRICS.csv", "--target",
                          "COLUMNS", *space_opts, "--propose", "--out", "mixture.json"])
    err_console.print(f"{done}{also}; train each, then fit their losses (a table of run or index and a "
                      "column per loss; --target names the loss columns, or `mean` averages every "
                      f"metric column): {command}", markup=False, soft_wrap=True)
