"""Build a TensorRT engine from an exported ONNX file (TensorRT 10 Python API).

Explicit-batch network from the ONNX parser (every parser error is logged), one
optimization profile over the batch axis, a workspace limit, a timing cache that is read
before and written after each build (so rebuilds and sibling builds reuse kernel timings),
and a manifest beside the plan recording TensorRT version, GPU, precision and profile.

An fp16 ONNX file (`export --fp16`) is built as a strongly typed network: its own casts
decide precision. An fp32 file with `fp16=True` lets TensorRT choose fp16 kernels where
they are faster (BuilderFlag.FP16).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from engines.iospec import INPUT, OUTPUT, TensorSpec, check_io
from engines.manifest import (
    EngineManifest,
    load_onnx_manifest,
    sha256_file,
    utc_now,
    write_manifest,
)
from engines.trt_common import (
    dims_tuple,
    make_logger,
    numpy_dtype_name,
    require_tensorrt,
    runtime_info,
    trt,
)
from engines.trt_plan import DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_MIB, Profile, profile_shapes
from monitor.errors import BackendUnavailableError, ModelFormatError

logger = logging.getLogger(__name__)

MIB = 1 << 20  # bytes


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings; every one is recorded in the engine's manifest."""

    fp16: bool = False  # allow fp16 kernels (fp32 ONNX) — an fp16 ONNX is always fp16
    max_batch: int = DEFAULT_MAX_BATCH  # profile max; bigger batches are split at run time
    opt_batch: int | None = None  # profile opt; None: the scorer's typical flush size
    workspace_mib: int = DEFAULT_WORKSPACE_MIB  # builder scratch memory limit
    timing_cache: Path | None = None  # read if present, written after the build
    device_index: int = 0  # which GPU to build for


def build_engine(
    onnx_path: str | Path, out_path: str | Path, opts: BuildOptions | None = None
) -> EngineManifest:
    """Parse, build and serialize; writes the plan and `<plan>.json`; returns the manifest."""
    opts = opts or BuildOptions()
    require_tensorrt()
    src, out = Path(onnx_path), Path(out_path)
    onnx_manifest = load_onnx_manifest(src)
    contract = onnx_manifest.contract
    profile = Profile.for_max_batch(opts.max_batch, opts.opt_batch)
    here = runtime_info(opts.device_index)
    trt_logger = make_logger()

    builder = trt.Builder(trt_logger)
    strongly_typed = onnx_manifest.precision == "fp16"
    network = _parse_onnx(builder, trt_logger, src, strongly_typed)
    io = network_io(network)
    check_io(contract, io, str(src))
    config = builder.create_builder_config()
    precision = _configure(builder, config, opts, strongly_typed, here.gpu_name)
    trt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(contract, profile).items():
        trt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(trt_profile)

    logger.info(
        "building %s engine for %s (profile %d/%d/%d, workspace %d MiB)",
        precision,
        here.gpu_name,
        profile.min_batch,
        profile.opt_batch,
        profile.max_batch,
        opts.workspace_mib,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailableError(
            f"TensorRT failed to build an engine from {src} (errors logged above); try a larger "
            "--workspace-mib or a smaller --max-batch"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(memoryview(serialized))
    if opts.timing_cache is not None:
        opts.timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
        logger.info("timing cache saved to %s", opts.timing_cache)

    manifest = EngineManifest(
        contract=contract,
        plan_file=out.name,
        plan_sha256=sha256_file(out),
        onnx_file=src.name,
        onnx_sha256=onnx_manifest.onnx_sha256,
        tensorrt_version=here.tensorrt_version,
        gpu_name=here.gpu_name,
        compute_capability=here.compute_capability,
        precision=precision,
        min_batch=profile.min_batch,
        opt_batch=profile.opt_batch,
        max_batch=profile.max_batch,
        workspace_mib=opts.workspace_mib,
        io=tuple(s.to_dict() for s in io),
        created_utc=utc_now(),
        calibration=onnx_manifest.calibration,
    )
    write_manifest(out, manifest)
    return manifest


def _parse_onnx(
    builder: trt.Builder, trt_logger: trt.ILogger, src: Path, strongly_typed: bool
) -> trt.INetworkDefinition:
    """The ONNX file as a TensorRT network; parser errors are logged and refused."""
    typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    # (a TensorRT without the flag builds every network strongly typed)
    flags = 1 << int(typed_flag) if strongly_typed and typed_flag is not None else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(src)):
        for i in range(parser.num_errors):
            logger.error(
                "ONNX parser error %d/%d: %s", i + 1, parser.num_errors, parser.get_error(i)
            )
        raise ModelFormatError(
            f"{src}: TensorRT {trt.__version__} cannot parse this ONNX file "
            f"({parser.num_errors} parser errors, logged above)"
        )
    return network


def _configure(
    builder: trt.Builder,
    config: trt.IBuilderConfig,
    opts: BuildOptions,
    strongly_typed: bool,
    gpu_name: str,
) -> str:
    """Workspace, precision flags and timing cache; returns the engine's precision."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib * MIB)
    precision = "fp16" if strongly_typed or opts.fp16 else "fp32"
    if opts.fp16 and not strongly_typed:
        if not hasattr(trt.BuilderFlag, "FP16"):  # weak typing was deprecated in TensorRT 10
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} has no fp16 builder flag: export with --fp16 and "
                "build the .fp16.onnx file instead"
            )
        if not getattr(builder, "platform_has_fast_fp16", True):
            logger.warning("%s has no fast fp16; building fp16 anyway", gpu_name)
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = b""
    if opts.timing_cache is not None and opts.timing_cache.is_file():
        cache_bytes = opts.timing_cache.read_bytes()
        logger.info("reusing timing cache %s (%d bytes)", opts.timing_cache, len(cache_bytes))
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return precision


def network_io(network: trt.INetworkDefinition) -> tuple[TensorSpec, ...]:
    """The parsed network's inputs and outputs as TensorSpecs."""
    specs = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        specs.append(TensorSpec(t.name, INPUT, numpy_dtype_name(t.dtype), dims_tuple(t.shape)))
    for i in range(network.num_outputs):
        t = network.get_output(i)
        specs.append(TensorSpec(t.name, OUTPUT, numpy_dtype_name(t.dtype), dims_tuple(t.shape)))
    return tuple(specs)
