"""The ``audiosim`` command line: a click group over the commands in :mod:`audiosim.commands`.

Each command parses its options, calls the library API and prints; nothing else. Imports stay
light: models and frameworks load inside the commands that need them.
"""

from __future__ import annotations

import sys

import click

from audiosim import __version__
from audiosim.errors import AudiosimError


class AudiosimGroup(click.Group):
    """Turns AudiosimError into a one-line message and exit code 2 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AudiosimError as e:
            from audiosim.commands.common import show

            click.secho(f"error: {show(e)}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=AudiosimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audiosim")
def main() -> None:
    """audiosim: index recordings, find clips that sound alike, benchmark embedders, score anomalies."""


def _register() -> None:
    # Command modules import only click until a command runs.
    from audiosim.commands import (anomaly, bench, check, compact, datasets, delete, index, info, locate, query, serve,
                                   tags, vae)

    for cmd in (index.index_cmd, query.query_cmd, locate.locate_cmd, tags.tags_cmd, info.info_cmd, info.embedders_cmd,
                delete.delete_cmd, check.check_cmd, check.repair_cmd, compact.compact_cmd, serve.serve_cmd, bench.bench_cmd, bench.compare_cmd, datasets.datasets,
                anomaly.anomaly, vae.vae):
        main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
