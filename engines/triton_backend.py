"""triton backend: score windows on a shared NVIDIA Triton Inference Server over gRPC.

The model must come from `deepfake-monitor export-triton`: the server's model config
carries the input contract, which this backend reads at connect time and checks against
the model's inputs. tritonclient is imported only here (pip install 'tritonclient[grpc]').
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from engines.batching import split_batch
from engines.iospec import INPUT, contract_io
from engines.triton_repo import NUMPY_TO_TRITON, contract_from_config
from monitor.backend import Scores, check_batch
from monitor.contract import InputContract
from monitor.errors import BackendUnavailableError, ContractError, ModelFormatError

logger = logging.getLogger(__name__)

DEFAULT_GRPC_PORT = 8001  # Triton's gRPC port
DEFAULT_TIMEOUT_S = 10.0  # per request; a stalled server must not stall the scorer forever


@dataclass(frozen=True)
class TritonTarget:
    """Where a model lives: parsed from triton://host:port/model[/version]."""

    host: str
    port: int
    model: str
    version: str = ""  # "" = the server's policy (latest)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> TritonTarget:
        parts = urlsplit(url)
        path = [p for p in parts.path.split("/") if p]
        if parts.scheme != "triton" or not parts.hostname or not 1 <= len(path) <= 2:
            raise BackendUnavailableError(
                f"bad Triton URL {url!r}; expected triton://host:port/model[/version]"
            )
        return cls(
            parts.hostname,
            parts.port or DEFAULT_GRPC_PORT,
            path[0],
            path[1] if len(path) == 2 else "",
        )


@dataclass(frozen=True)
class RequestTensor:
    """One input of an inference request as Triton sees it."""

    name: str
    shape: tuple[int, ...]
    datatype: str  # Triton wire type: "FP32", "UINT8"


def request_tensors(
    contract: InputContract, audio: np.ndarray, faces: np.ndarray
) -> tuple[RequestTensor, ...]:
    """Names, shapes and Triton types of a request's inputs (matches config.pbtxt)."""
    arrays = {contract.audio_input: audio, contract.faces_input: faces}
    return tuple(
        RequestTensor(
            s.name, tuple(arrays[s.name].shape), NUMPY_TO_TRITON[arrays[s.name].dtype.name]
        )
        for s in contract_io(contract)
        if s.mode == INPUT
    )


def _client_errors() -> tuple[type[BaseException], ...]:
    from tritonclient.utils import InferenceServerException

    return (InferenceServerException,)


class TritonBackend:
    """Sends each batch to Triton as one gRPC request; Triton batches across clients."""

    name = "triton"
    calibration: dict[str, Any] | None = None  # calibrate's state settings (manifest)

    def __init__(
        self,
        target: TritonTarget,
        contract: InputContract,
        client: Any,
        timeout_s: float,
        max_batch: int,
    ) -> None:
        self.target = target
        self.contract = contract
        self._client = client
        self.timeout_s = timeout_s
        self.max_batch = max_batch  # the model's max_batch_size; bigger batches are split

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> TritonBackend:
        """Connect, check the model is ready, and read its contract from the model config."""
        target = TritonTarget.parse(url)
        try:
            import tritonclient.grpc as grpcclient
        except ImportError as exc:
            raise BackendUnavailableError(
                "the triton backend needs tritonclient: pip install 'tritonclient[grpc]'"
            ) from exc
        client = grpcclient.InferenceServerClient(url=target.address)
        try:
            if not client.is_model_ready(target.model, target.version, client_timeout=timeout_s):
                raise BackendUnavailableError(
                    f"Triton at {target.address} has no ready model {target.model!r}"
                )
            config = client.get_model_config(
                target.model, target.version, as_json=True, client_timeout=timeout_s
            )
        except _client_errors() as exc:
            client.close()
            raise BackendUnavailableError(
                f"cannot reach Triton at {target.address}: {exc}"
            ) from exc
        cfg = config.get("config", config)
        contract = contract_from_config(cfg, url)
        cls._check_config(contract, cfg, url)
        logger.info(
            "triton backend: model %s at %s (max_batch_size %s)",
            target.model,
            target.address,
            cfg.get("max_batch_size"),
        )
        return cls(target, contract, client, timeout_s, int(cfg["max_batch_size"]))

    @staticmethod
    def _check_config(contract: InputContract, cfg: dict[str, Any], where: str) -> None:
        """The served inputs must be the contract's (the config could have been hand-edited)."""
        want = {
            s.name: ("TYPE_" + NUMPY_TO_TRITON[s.dtype], list(s.row_shape))
            for s in contract_io(contract)
            if s.mode == INPUT
        }
        have = {
            i.get("name"): (i.get("data_type"), [int(d) for d in i.get("dims", [])])
            for i in cfg.get("input", [])
        }
        if want != have:
            raise ContractError(
                f"{where}: served inputs {have} do not match the model's contract {want}"
            )
        if int(cfg.get("max_batch_size", 0)) < 1:
            raise ModelFormatError(f"{where}: the Triton model must batch (max_batch_size >= 1)")

    def build_request(self, audio: np.ndarray, faces: np.ndarray) -> tuple[list[Any], list[Any]]:
        """tritonclient InferInput / InferRequestedOutput objects for one batch."""
        import tritonclient.grpc as grpcclient

        arrays = {self.contract.audio_input: audio, self.contract.faces_input: faces}
        inputs = []
        for t in request_tensors(self.contract, audio, faces):
            inp = grpcclient.InferInput(t.name, list(t.shape), t.datatype)
            inp.set_data_from_numpy(np.ascontiguousarray(arrays[t.name]))
            inputs.append(inp)
        outputs = [grpcclient.InferRequestedOutput(n) for n in self.contract.output_names]
        return inputs, outputs

    def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        check_batch(self.contract, audio, faces)
        parts = [
            self._infer(audio[a:b], faces[a:b]) for a, b in split_batch(len(audio), self.max_batch)
        ]
        n_out = len(self.contract.output_names)
        return Scores.from_outputs([np.concatenate([p[i] for p in parts]) for i in range(n_out)])

    def _infer(self, audio: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
        inputs, outputs = self.build_request(audio, faces)
        try:
            result = self._client.infer(
                self.target.model,
                inputs,
                model_version=self.target.version,
                outputs=outputs,
                client_timeout=self.timeout_s,
            )
        except _client_errors() as exc:
            raise BackendUnavailableError(
                f"Triton at {self.target.address} failed to score a batch: {exc}"
            ) from exc
        return [
            np.asarray(result.as_numpy(n), dtype=np.float32).reshape(-1)
            for n in self.contract.output_names
        ]

    def close(self) -> None:
        self._client.close()
