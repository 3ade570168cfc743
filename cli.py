"""The ``audiosim`` command line: a click group over the commands in :mod:`audiosim.commands`.

Each command parses its options, calls the library API and prints; nothing else. The group is lazy:
:data:`COMMANDS` names each command's module and one-line help, so ``audiosim --help`` imports no
command and ``audiosim NAME`` imports only NAME's module (and the library it uses).
"""

from __future__ import annotations

import importlib
import sys

import click

from audiosim import __version__
from audiosim.commands.common import show
from audiosim.errors import AudiosimError

# name -> (module under audiosim.commands, attribute, one-line help shown by `audiosim --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "anomaly": ("anomaly", "anomaly", "Anomaly scoring: fit on normal recordings, score new clips, evaluate (DCASE layout, "
                                      "ESC-50 novelty)."),
    "bench": ("bench", "bench_cmd", "Benchmark an embedder on ESC-50: 1-NN accuracy, MAP@K, Acc@K, probes, under loo and "
                                    "xfold (or tag search)."),
    "check": ("check", "check_cmd", "Verify a collection: manifest, every part's size, sha256 and contents, ids, and the "
                                    "saved index."),
    "compact": ("compact", "compact_cmd", "Merge small part files into large ones; ids, vectors and labels are unchanged "
                                          "and the index stays current."),
    "compare": ("bench", "compare_cmd", "Compare benchmark runs (RUN = an `audiosim bench --out` folder, or FOLDER::VARIANT): "
                                        "McNemar, Holm, bootstrap."),
    "datasets": ("datasets", "datasets", "Benchmark datasets: ESC-50, SYNTHETIC machine sounds in DCASE layouts."),
    "dedup": ("dedup", "dedup_cmd", "Find duplicate files in a collection: identical content (sha256), then near-duplicates "
                                    "above --threshold."),
    "delete": ("delete", "delete_cmd", "Remove vectors by --path or --id; the index is updated in the same run."),
    "embedders": ("info", "embedders_cmd", "List the registered embedders."),
    "index": ("index", "index_cmd", "Embed every audio file under FOLDER into a collection and (re)build its index."),
    "info": ("info", "info_cmd", "Describe a collection: embedder, pooling, metric, size, labels, index."),
    "locate": ("locate", "locate_cmd", "Find where EXCERPT (longer than one segment) was cut from: file, offset and "
                                       "confidence."),
    "map": ("map", "map_cmd", "Write a 2-D map of a collection (UMAP, else PCA + t-SNE) as HTML: colours by label or "
                              "cluster, click to play."),
    "query": ("query", "query_cmd", "Find the clips in a collection that sound most like each CLIP (or like stored items "
                                    "with --id, or a --tag)."),
    "reembed": ("reembed", "reembed_cmd", "Write a new collection with the same ids, paths, labels and segments, embedded "
                "by another model."),
    "repair": ("check", "repair_cmd", "Make a damaged collection sound: drop unreadable parts, rebuild a lost manifest and "
                                      "the index."),
    "serve": ("serve", "serve_cmd", "Serve collections over HTTP: a REST API (OpenAPI at /docs) and a page at / to search "
                                    "and listen."),
    "tags": ("tags", "tags_cmd", "Count the classifier tags stored in a collection (collections indexed with yamnet or "
                                 "panns)."),
    "undelete": ("undelete", "undelete_cmd", "Let the next `audiosim index` embed deleted files again (--path FILE, "
                                             "repeatable, or --all)."),
    "vae": ("vae", "vae", "Train the unsupervised GLU-ConvVAE embedder (use it with --embedder vae --weights CKPT)."),
}


def load_command(name: str) -> click.Command:
    module, attr, _ = COMMANDS[name]
    return getattr(importlib.import_module(f"audiosim.commands.{module}"), attr)


class AudiosimGroup(click.Group):
    """Loads a command when it runs; turns AudiosimError into a one-line message and exit code 2, not a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return load_command(name) if name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(n) for n in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(COMMANDS[name][2], limit)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AudiosimError as e:
            click.secho(f"error: {show(e)}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=AudiosimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audiosim")
def main() -> None:
    """audiosim: index recordings, find clips that sound alike, benchmark embedders, score anomalies."""


if __name__ == "__main__":
    main()
