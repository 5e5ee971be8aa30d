"""Serve frames with the power-aware runtime and log every depth decision with its reason.

    python examples/serve_frames.py BUNDLE --frames DIR           # every image in DIR, in name order
    python examples/serve_frames.py BUNDLE --camera 0              # a camera (needs opencv-python)
    python examples/serve_frames.py BUNDLE --frames DIR --target openvino --precision int8 --loop

The runtime reads the device's power state (battery, nvpmodel mode, rails, temperature) every
`--poll-s` seconds and the policy picks the depth; each change is logged with the policy's
reason, and each frame with its answer. Frames are resized to the bundle's input size and
scaled by `--scale` (the graph holds the normalisation fitted at training).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np

from glonet_edge.runtime import Runtime

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
log = logging.getLogger("serve_frames")


def frames_from_folder(folder: Path, loop: bool) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, H x W x C uint8 array) for each image in the folder, in name order."""
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    while True:
        for path in paths:
            with Image.open(path) as img:
                yield path.name, np.asarray(img.convert("RGB"))
        if not loop:
            return


def frames_from_camera(index: int) -> Iterator[Tuple[str, np.ndarray]]:
    import cv2  # opencv-python; on a Jetson, JetPack's python3-opencv

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise SystemExit(f"camera {index} cannot be opened")
    n = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            n += 1
            yield f"frame {n}", bgr[:, :, ::-1]
    finally:
        cap.release()


def to_input(frame: np.ndarray, shape: Tuple[int, ...], scale: float) -> np.ndarray:
    """One (1, C, H, W) float32 batch in the bundle's input layout."""
    from PIL import Image

    channels, height, width = shape
    img = Image.fromarray(frame).resize((width, height), Image.BILINEAR)
    img = img.convert("L" if channels == 1 else "RGB")
    x = np.asarray(img, dtype=np.float32).reshape(height, width, channels).transpose(2, 0, 1)
    return (x * scale)[None]


def serve(rt: Runtime, frames: Iterator[Tuple[str, np.ndarray]], scale: float, max_frames: int) -> None:
    shape = tuple(rt.manifest.input_shape)
    last_depth = None
    for n, (name, frame) in enumerate(frames, start=1):
        pred = rt.infer(to_input(frame, shape, scale))
        if pred.depth != last_depth:
            log.info("depth %s -> %d: %s (power tier %s)", last_depth, pred.depth, pred.reason, rt.decision.tier)
            last_depth = pred.depth
        answer = int(pred.outputs[0].argmax()) if rt.manifest.task == "classification" else float(pred.outputs[0, 0])
        log.info("%s: %s at depth %d in %.2f ms", name, answer, pred.depth, pred.latency_ms)
        if max_frames and n >= max_frames:
            return


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--frames", type=Path, help="folder of images")
    src.add_argument("--camera", type=int, help="camera index (OpenCV)")
    p.add_argument("--target", default="onnxruntime")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--power", default="auto", help="power source spec (default auto)")
    p.add_argument("--poll-s", type=float, default=1.0, help="seconds between power readings")
    p.add_argument("--scale", type=float, default=1 / 255, help="pixel scale before the graph (digits: 16/255)")
    p.add_argument("--loop", action="store_true", help="repeat the folder forever")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: never)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    frames = frames_from_camera(args.camera) if args.frames is None else frames_from_folder(args.frames, args.loop)
    with Runtime.open(args.bundle, target=args.target, precision=args.precision, power=args.power,
                      poll_interval_s=args.poll_s, anytime=False) as rt:
        log.info("serving %s on %s %s, depths %s, power source %r", args.bundle, args.target, args.precision,
                 rt.depths, rt.power)
        started = time.perf_counter()
        serve(rt, frames, args.scale, args.max_frames)
        log.info("done in %.1f s", time.perf_counter() - started)


if __name__ == "__main__":
    main()
