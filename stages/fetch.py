"""Stage ``fetch``: write the canonical MNIST arrays, digest-checked, to one ``.npz``.

Sources are tried in the order params.yaml gives; each attempt is logged as one
line (source, outcome, seconds). Nothing is written unless a source's arrays
match the pinned digests.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kernel.atomic import write_npz
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import FetchParams, load_params, stage_argument_parser
from kernel.timing import note_work_started
from stages.dataset.canonical import Mnist, verify_canonical
from stages.dataset.sources import SOURCES, Arrays, SourceContext


def fetch_mnist(
    source_names: Sequence[str],
    ctx: SourceContext,
    sources: Mapping[str, Callable[[SourceContext], Arrays]] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[str, Mnist]:
    """Return the first source whose arrays verify; raise listing every failure otherwise."""
    sources = SOURCES if sources is None else sources
    failures = []
    for name in source_names:
        started = time.perf_counter()
        try:
            mnist = verify_canonical(sources[name](ctx))
        except CommandError as err:
            seconds = time.perf_counter() - started
            log(f"fetch: source {name}: failed in {seconds:.1f} s: {err}")
            failures.append(f"{name}: {err}")
            continue
        log(f"fetch: source {name}: ok, digests verified, in {time.perf_counter() - started:.1f} s")
        return name, mnist
    raise CommandError("no source gave MNIST: " + "; ".join(failures))


def source_context(params: FetchParams, show_progress: bool) -> SourceContext:
    local = Path(params.local_path) if params.local_path else None
    return SourceContext(
        local_path=local,
        timeout_seconds=params.timeout_seconds,
        show_progress=show_progress,
        keras_url=params.keras_url,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the .npz to write")
    args = parser.parse_args(argv)
    params = load_params(args.params).fetch
    ctx = source_context(params, show_progress=sys.stderr.isatty())
    started = time.perf_counter()
    note_work_started("fetch")
    source, mnist = fetch_mnist(
        params.sources, ctx, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    write_npz(args.out, mnist.arrays())
    print(
        f"fetch: wrote {args.out}: {len(mnist.y_train):,} training and {len(mnist.y_test):,} "
        f"test images from {source}, digests verified, in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    exit_process(run_command("fetch", main))
