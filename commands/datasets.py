"""``audiosim datasets``: fetch benchmark datasets for online users."""

from __future__ import annotations

import click

from audiosim.engine.audio.machines import MACHINE_TYPES, Fault, SynthConfig, write_machine_dataset
from audiosim.eval.esc50 import ESC50_ENV, download_esc50


@click.group("datasets")
def datasets() -> None:
    """Benchmark datasets: ESC-50, SYNTHETIC machine sounds in DCASE layouts."""


@datasets.command("download")
@click.argument("name", type=click.Choice(["esc50"]))
@click.option("--dest", default=None, type=click.Path(file_okay=False),
              help="Folder to download into (default <audiosim cache>/datasets/esc50).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def download_cmd(name, dest, quiet):
    """Download and unpack a dataset's official archive (resumable; prints the received archive's sha256)."""

    root, digest = download_esc50(dest, progress=not quiet)
    if digest:
        click.echo(f"received archive sha256 {digest}")
    else:
        click.echo("already downloaded")
    click.echo(f"ESC-50 is in {root}; benchmark it with `audiosim bench --esc50 {root} ...` or `export {ESC50_ENV}={root}`")


@datasets.command("synth-machines")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--year", type=click.Choice(["2020", "2021", "2022", "2023", "2024"]), default="2020", show_default=True,
              help="File layout: 2020 (normal_id_XX) or 2021-2024 (sections, source/target domains, attribute CSVs 2022+).")
@click.option("--machine", "machines", multiple=True, type=click.Choice(list(MACHINE_TYPES)),
              help="Machine types, repeatable [default: all].")
@click.option("--ids", type=int, default=3, show_default=True, help="IDs (sections) per machine type.")
@click.option("--train", type=int, default=20, show_default=True, help="Normal training clips per ID (source domain).")
@click.option("--target-train", type=int, default=3, show_default=True, help="2021-2024: target-domain training clips per section.")
@click.option("--test", "test_n", type=int, default=10, show_default=True,
              help="Normal and anomalous test clips each, per ID (and domain).")
@click.option("--duration", type=float, default=2.0, show_default=True, help="Clip length in seconds.")
@click.option("--sample-rate", type=int, default=16000, show_default=True)
@click.option("--strength", type=float, default=1.0, show_default=True, help="Fault strength (0 = none, 1 = default).")
@click.option("--fault", "faults", multiple=True, type=click.Choice([f.value for f in Fault]),
              help="Faults to use, repeatable [default: each machine type's].")
@click.option("--seed", type=int, default=0, show_default=True)
def synth_machines_cmd(out, year, machines, ids, train, target_train, test_n, duration, sample_rate, strength, faults, seed):
    """Write a SYNTHETIC machine-sound dataset in a DCASE Task 2 layout (faults with physical stories)."""

    config = SynthConfig(year=int(year), machines=tuple(machines) or MACHINE_TYPES, ids=ids, train=train,
                         target_train=target_train, test_normal=test_n, test_anomaly=test_n, duration_s=duration,
                         sample_rate=sample_rate, strength=strength, faults=tuple(faults), seed=seed)
    s = write_machine_dataset(out, config)
    click.echo(f"wrote {s.files} SYNTHETIC clips ({', '.join(f'{k} {v}' for k, v in sorted(s.by_split.items()))}) "
               f"in the DCASE {year} layout under {out}")
