"""``nhance-batch enhance-image``: one still image through DPED."""

from __future__ import annotations

from pathlib import Path

import click

from nhance_batch.cli.common import config_errors
from nhance_batch.cli.options import MODEL


@click.command("enhance-image")
@click.argument("src", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("dst", metavar="OUT", type=click.Path(path_type=Path, dir_okay=False))
@MODEL
@click.option("--side-by-side", is_flag=True, help="Write the input and the result side by side.")
@config_errors
def enhance_image(src: Path, dst: Path, model_name: str, model_path: Path | None,
                  precision: str | None, jit: str | None, strength: float | None,
                  side_by_side: bool) -> None:
    """Enhance the image IN (any format PIL or PyAV reads) into OUT (.png, .jpg or .jpeg)."""
    from nhance_batch import images
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.enhancer import Enhancer  # loads no backend: setup() does
    from nhance_batch.model.registry import resolve

    if dst.suffix.lower() not in images.WRITE_FORMATS:
        raise click.BadParameter(f"{dst.suffix or 'no extension'}; use "
                                 f"{', '.join(images.WRITE_FORMATS)}", param_hint="OUT")
    resolve(model_name, model_path)  # an unknown model is refused before a backend loads
    rgb = images.read_image(src)
    config = ModelConfig(name=model_name, path=model_path, batch_size=1,
                         **{k: v for k, v in (("precision", precision), ("jit", jit),
                                              ("strength", strength)) if v is not None})
    enhancer = Enhancer(config)
    enhancer.setup()
    strength = config.strength
    if strength == 1.0:
        out = enhancer(rgb)
    else:
        from nhance_batch.pipeline.grade import blend

        out = blend(rgb[None], enhancer(rgb[None], as_float=True), strength)[0]
    images.write_image(dst, images.side_by_side(rgb, out) if side_by_side else out)
    decision = enhancer.decision(rgb[None])
    click.echo(f"{src} -> {dst} ({rgb.shape[1]}x{rgb.shape[0]}, model {model_name}, "
               f"{config.precision}, {decision.path})")
