"""The manifest: what a user declares, as strict, typed pydantic models.

Every model forbids unknown keys (a misspelt key is an error naming its line, see
:mod:`deployer.manifest.loader`), YAML keys are camelCase, and unions are discriminated: the
model's ``source``, the target's ``kind``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ByteSize,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from deployer.manifest.base import PathText, PinnedText, Spec
from deployer.manifest.performance import BenchmarkSpec, RolloutSpec, SloSpec, TuneSpec

API_VERSION = "deployer/v1alpha1"
KIND = "ModelDeployment"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: A hub revision: a branch, tag or commit ('main', 'v1.0', 'refs/pr/1', 40 hex digits).
REVISION = r"^[A-Za-z0-9_][A-Za-z0-9._+-]*(/[A-Za-z0-9_][A-Za-z0-9._+-]*)*$"
#: A release number: digits first, then letters, digits, '.', '+' and '-' (0.32.0, 0.9.2rc1).
VERSION = r"^[0-9][0-9A-Za-z.+!_-]*$"
#: A DNS host name (RFC 1123): labels of letters, digits and '-', dot-separated.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _host(value: str) -> str:
    """An IP address or a DNS host name."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if len(value) > 253 or not _HOST_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an IP address or a host name (letters, digits, '-' and '.')"
        )
    return value


#: An address to bind or reach: an IP address or a host name.
HostText = Annotated[str, AfterValidator(_host)]
#: An inventory's host or group name.
HostName = Annotated[str, StringConstraints(min_length=1, max_length=253)]
#: Short free text that ends up in requests and reports (names, titles).
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SecretRef(Spec):
    """Where a secret comes from: an environment variable or a file. Never a literal."""

    env: Annotated[str, StringConstraints(pattern=ENV_NAME)] | None = None
    """Name of an environment variable that holds the secret."""
    file: PathText | None = None
    """Path of a file whose content (stripped) is the secret."""

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


class Metadata(Spec):
    """The deployment's identity."""

    name: Annotated[str, StringConstraints(max_length=63, pattern=DNS1123_LABEL)]
    """DNS-1123 label: lower-case letters, digits and '-', at most 63 characters. It becomes
    process, unit, Kubernetes and file names."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Free-form key/value labels, for people and for filtering."""


class SignatureSpec(Spec):
    """A publisher's signature the model's files must carry, made with ``model_signing`` (its
    key or certificate method; Sigstore's keyless method needs the network and is not offered).
    The publisher signs exactly the files deployer serves, leaving out the signature file."""

    method: Literal["key", "certificate"]
    """'key': an elliptic-curve key pair (give publicKey); 'certificate': a signing certificate
    checked against a certificate chain (give certificateChain)."""
    public_key: PathText | None = None
    """For method key: path of the publisher's PEM public key. Relative paths are relative to
    the manifest's file."""
    certificate_chain: Annotated[list[PathText], Field(max_length=64)] | None = None
    """For method certificate: PEM files of the chain up to the root the signing certificate
    must lead to. Relative paths are relative to the manifest's file."""
    signature_file: PathText = "model.sig"
    """Path of the signature inside the repository (or the folder), e.g. 'model.sig'."""

    @model_validator(mode="after")
    def _fields_for_method(self) -> SignatureSpec:
        if self.method == "key":
            if not self.public_key:
                raise ValueError("method 'key' needs 'publicKey' (a PEM public key file)")
            if self.certificate_chain is not None:
                raise ValueError("'certificateChain' goes with method 'certificate', not 'key'")
        else:
            if not self.certificate_chain:
                raise ValueError(
                    "method 'certificate' needs 'certificateChain' (one or more PEM files)"
                )
            if self.public_key is not None:
                raise ValueError("'publicKey' goes with method 'key', not 'certificate'")
        return self

    @field_validator("signature_file")
    @classmethod
    def _inside_the_model(cls, value: str) -> str:
        parts = value.split("/")
        if (
            not value
            or value.startswith(("/", "~"))
            or "\\" in value
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ValueError(
                "signatureFile must be a relative path inside the model, without '.' or '..'"
            )
        return value


# --- model source ------------------------------------------------------------------------------


class HuggingFaceModel(Spec):
    """Weights from a Hugging Face hub repository (or a mirror of the hub)."""

    source: Literal["huggingface"]
    repo: Annotated[str, StringConstraints(pattern=REPO_ID)]
    """Repository id on the hub, 'org/name'."""
    revision: Annotated[str, StringConstraints(max_length=255, pattern=REVISION)] = "main"
    """Branch, tag or 40-hex commit; the lockfile pins it to a commit."""
    endpoint: Annotated[str, StringConstraints(max_length=2048)] | None = None
    """A hub mirror's base URL (default: HF_ENDPOINT, then the public hub)."""
    token: SecretRef | None = None
    """Hub token, as a reference to an environment variable or a file."""
    allow_pickle: bool = False
    """Allow pickle-based weights (.bin, .pt); they are scanned before use."""
    trust_remote_code: bool = False
    """Allow repositories whose config needs custom Python code."""
    signature: SignatureSpec | None = None
    """Require a model_signing signature over the fetched files, verified before an engine can
    see them (default: no signature is checked)."""

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("endpoint must be an http:// or https:// URL")
        return value.rstrip("/") if value else value


class LocalModel(Spec):
    """Weights already on disk where the engine runs."""

    source: Literal["local"]
    path: PathText
    """A folder with config.json, the tokenizer and safetensors weights. Relative paths are
    relative to the manifest's file; '~' and ${VARS} are expanded."""
    trust_remote_code: bool = False
    """Allow models whose config needs custom Python code."""
    signature: SignatureSpec | None = None
    """Require a model_signing signature over the folder's files, checked on every plan
    (default: no signature is checked)."""


ModelSource = Annotated[HuggingFaceModel | LocalModel, Field(discriminator="source")]

# --- quantization ------------------------------------------------------------------------------

QuantizeMethod = Literal["none", "fp8", "int8", "w4a16"]
#: Methods deployer quantizes itself (llmcompressor, before deploying); fp8 is the engine's.
ARTIFACT_METHODS = ("int8", "w4a16")


class CalibrationSpec(PinnedText):
    """The samples the quantizer calibrates on: JSON lines, each {"messages": [...]} (a chat,
    rendered with the model's chat template) or {"text": ...}."""

    builtin: str | None = None
    """Name of a calibration set shipped with deployer: 'chat-v1' (SmolLM2-135M-Instruct's
    answers to 95 varied chat prompts)."""
    samples: Annotated[int, Field(ge=1, le=4096)] = 64
    """How many samples (the first ones of the file) to calibrate on."""
    sequence_length: Annotated[int, Field(ge=16, le=32768)] = 512
    """Each sample is cut to at most this many tokens."""

    @model_validator(mode="before")
    @classmethod
    def _default_builtin(cls, value: object) -> object:
        if isinstance(value, dict) and "file" not in value and "builtin" not in value:
            return {**value, "builtin": "chat-v1"}
        return value


class EvaluationText(PinnedText):
    """The text the quality gate measures perplexity on (plain UTF-8 text)."""

    builtin: str | None = None
    """Name of an evaluation text shipped with deployer: 'en-v1' (about 1,000 words of plain
    English prose on varied topics)."""


def _default_calibration() -> CalibrationSpec:
    return CalibrationSpec(builtin="chat-v1")


def _default_evaluation() -> EvaluationText:
    return EvaluationText(builtin="en-v1")


class QualityGateSpec(Spec):
    """What the quantized model must show before it is deployed; the manifest's smoke checks run
    on the deployed endpoint as well."""

    max_perplexity_increase: float = Field(
        default=0.25,
        json_schema_extra={"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?%$"},
    )
    """Largest allowed rise of perplexity on the evaluation text, quantized against the source
    model: a fraction (0.1) or a percentage ('10%')."""
    text: EvaluationText = Field(default_factory=_default_evaluation)
    """The evaluation text (default: the built-in 'en-v1')."""

    @field_validator("max_perplexity_increase", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                return float(value.strip()[:-1]) / 100
            except ValueError:
                raise ValueError(f"{value!r} is not a percentage such as '10%'") from None
        return value

    @field_validator("max_perplexity_increase")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("cannot be negative (0 allows no increase)")
        return value


class QuantizeSpec(Spec):
    """How the weights are quantized for serving."""

    method: QuantizeMethod = "none"
    """none; fp8 (dynamic, done by the engine at load time on GPUs that support it); int8
    (W8A8: int8 weights and activations, SmoothQuant + GPTQ); w4a16 (4-bit weights, GPTQ).
    int8 and w4a16 are made by deployer with llmcompressor before deploying, cached in the model
    store and checked by the quality gate."""
    algorithm: Literal["gptq", "rtn"] = "gptq"
    """How weights are rounded: 'gptq' (uses the calibration samples to correct the error) or
    'rtn' (round to nearest, no weight calibration)."""
    group_size: Annotated[int, Field(ge=8, le=4096)] | Literal["auto"] = "auto"
    """w4a16: weights per scale group. It must divide every dimension it quantizes (SmolLM2's
    hidden size 576 is not a multiple of 128); 'auto' takes the largest of 128, 64, 32 that does."""
    smoothing_strength: Annotated[float, Field(gt=0, lt=1)] | None = None
    """int8: SmoothQuant's migration strength (default 0.8)."""
    calibration: CalibrationSpec = Field(default_factory=_default_calibration)
    """The calibration samples (default: the built-in 'chat-v1', 64 samples of 512 tokens)."""
    gate: QualityGateSpec = Field(default_factory=QualityGateSpec)
    """The quality gate: the largest perplexity increase allowed (default 25%)."""

    @model_validator(mode="after")
    def _options_for_method(self) -> QuantizeSpec:
        given = self.model_fields_set
        if self.method not in ARTIFACT_METHODS:
            extra = sorted(
                to_camel(k)
                for k in ("algorithm", "group_size", "smoothing_strength", "calibration", "gate")
                if k in given
            )
            if extra:
                raise ValueError(
                    f"{', '.join(extra)}: only for method int8 or w4a16 (deployer quantizes "
                    f"those itself); method {self.method} takes none"
                )
        if "group_size" in given and self.method != "w4a16":
            raise ValueError("groupSize applies to method w4a16 only")
        if "smoothing_strength" in given and self.method != "int8":
            raise ValueError("smoothingStrength applies to method int8 only")
        return self


# --- serving -----------------------------------------------------------------------------------

ArgValue = str | int | float | bool | list[str | int | float]


def _check_flag_names(value: dict[str, ArgValue]) -> dict[str, ArgValue]:
    for key in value:
        if not re.match(r"^[a-z0-9][a-z0-9-]*$", key):
            raise ValueError(
                f"engine flag {key!r} must be written without dashes in front, "
                "lower-case with '-', e.g. enable-prefix-caching"
            )
    return value


class ServingSpec(Spec):
    """How vLLM serves the model (``engine: vllm``, the default)."""

    engine: Literal["vllm"] = "vllm"
    """The serving engine: 'vllm' (default) or 'llamacpp'."""
    version: Annotated[str, StringConstraints(max_length=64, pattern=VERSION)] | None = None
    """Engine package version; default: the version this deployer release is tested with."""
    served_model_name: Name | None = None
    """The model name clients send; default: metadata.name."""
    max_model_len: Annotated[int, Field(ge=16, le=2**24)] | None = None
    """Context length in tokens (prompt plus output)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights and activations type; 'auto' takes the model config's."""
    tensor_parallel_size: Annotated[int, Field(ge=1, le=512)] | Literal["auto"] = "auto"
    """GPUs to shard the model over (at least 1), or 'auto' (the planner decides)."""
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = None
    """Fraction of each GPU's memory the engine may use (vLLM default 0.9)."""
    kv_cache_memory: Annotated[ByteSize, Field(ge=1, le=2**50)] | None = None
    """KV-cache size, e.g. '1GiB'. Required by the CPU build; on GPUs it overrides the
    utilization-based budget."""
    max_num_seqs: Annotated[int, Field(ge=1, le=2**20)] | None = None
    """Most sequences the engine runs in one batch."""
    runner: Literal["auto", "generate", "pooling"] = "auto"
    """'pooling' serves embeddings on /v1/embeddings."""
    host: HostText = "127.0.0.1"
    """Address the engine binds to; loopback unless you mean to expose it."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Port to serve on; default: a free port, kept across applies."""
    api_key: SecretRef | None = None
    """The engine's API key; default: deployer generates one and keeps it owner-only."""
    startup_timeout_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    """Seconds the engine may take to load the model and answer /health."""
    args: dict[str, ArgValue] = Field(default_factory=dict)
    """Other engine flags, passed through: {enable-prefix-caching: true} becomes
    --enable-prefix-caching."""
    env: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str] = Field(
        default_factory=dict
    )
    """Extra environment variables for the engine process (not secrets)."""

    @field_validator("args")
    @classmethod
    def _plain_flag_names(cls, value: dict[str, ArgValue]) -> dict[str, ArgValue]:
        return _check_flag_names(value)


class LlamaCppServingSpec(Spec):
    """How llama.cpp (llama-cpp-python's OpenAI-compatible server) serves a GGUF model."""

    engine: Literal["llamacpp"]
    """The serving engine: 'llamacpp'."""
    version: Annotated[str, StringConstraints(max_length=64, pattern=VERSION)] | None = None
    """llama-cpp-python version; default: the version this deployer release is tested with."""
    served_model_name: Name | None = None
    """The model name clients send; default: metadata.name."""
    max_model_len: Annotated[int, Field(ge=16, le=2**24)] | None = None
    """Context length in tokens (llama.cpp's n_ctx); default 2048."""
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    """CPU threads for generation and prompts; default: the server's (half the CPUs, all)."""
    host: HostText = "127.0.0.1"
    """Address the engine binds to; loopback unless you mean to expose it."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Port to serve on; default: a free port, kept across applies."""
    api_key: SecretRef | None = None
    """The engine's API key; default: deployer generates one and keeps it owner-only."""
    startup_timeout_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    """Seconds the engine may take to load the model and answer."""
    args: dict[str, ArgValue] = Field(default_factory=dict)
    """Other server settings, passed through: {n-batch: 256} becomes --n_batch 256."""
    env: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str] = Field(
        default_factory=dict
    )
    """Extra environment variables for the engine process (not secrets; none the server reads
    as a setting)."""

    @field_validator("args")
    @classmethod
    def _plain_flag_names(cls, value: dict[str, ArgValue]) -> dict[str, ArgValue]:
        return _check_flag_names(value)


def _engine_of(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("engine", "vllm"))
    return str(getattr(value, "engine", "vllm"))


#: ``spec.serving``: a union on ``engine`` (absent: vllm).
Serving = Annotated[
    Annotated[ServingSpec, Tag("vllm")] | Annotated[LlamaCppServingSpec, Tag("llamacpp")],
    Discriminator(_engine_of),
]


# --- resources ---------------------------------------------------------------------------------


class ResourcesSpec(Spec):
    """What hardware one replica needs."""

    accelerator: str = "auto"
    """'cpu', an accelerator name such as H100-80GB or L40S, or 'auto' (what the target has)."""
    count: Annotated[int, Field(ge=1, le=512)] | Literal["auto"] = "auto"
    """Accelerators per replica; 'auto' lets the planner choose."""
    hourly_price: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    """Price of one accelerator per hour in USD, for the plan's cost; default: deployer's
    catalog price (an on-demand list price, an assumption)."""


# --- targets -----------------------------------------------------------------------------------


class LocalTargetSpec(Spec):
    """This machine."""

    kind: Literal["local"]


class SshTargetSpec(Spec):
    """Hosts reached over SSH, from an inventory."""

    kind: Literal["ssh"]
    inventory: PathText
    """Path of an inventory file (deployer's YAML or an Ansible inventory)."""
    hosts: Annotated[list[HostName], Field(max_length=10_000)] | None = None
    """Inventory host names to deploy to; not with 'group'."""
    group: HostName | None = None
    """An inventory group to deploy to; not with 'hosts'."""
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Engine instances to run, at least 1."""

    @model_validator(mode="after")
    def _hosts_or_group(self) -> SshTargetSpec:
        if self.hosts is not None and self.group is not None:
            raise ValueError("give 'hosts' or 'group', not both")
        return self


class KubernetesTargetSpec(Spec):
    """A Kubernetes cluster, through a kubeconfig context."""

    kind: Literal["kubernetes"]
    context: str | None = None
    """kubeconfig context (default: the current one)."""
    namespace: Annotated[str, StringConstraints(max_length=63, pattern=DNS1123_LABEL)] = "default"
    """Namespace to deploy into: a DNS-1123 label."""
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Pods serving the model, at least 1."""


TargetSpec = Annotated[
    LocalTargetSpec | SshTargetSpec | KubernetesTargetSpec, Field(discriminator="kind")
]

# --- smoke checks ------------------------------------------------------------------------------


class Expectation(Spec):
    """What a smoke check's answer must show; every condition given must hold."""

    contains: str | list[str] | None = None
    """Text (or every text of a list) the answer must contain, case-insensitive."""
    not_contains: str | list[str] | None = None
    """Text (or any text of a list) the answer must not contain, case-insensitive."""
    regex: str | None = None
    """A regular expression the answer must match (re.search)."""
    json_schema: dict[str, object] | None = None
    """The answer must be JSON valid against this schema."""
    dimensions: Annotated[int, Field(ge=1, le=2**20)] | None = None
    """For embeddings: the vector's length."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, object] | None) -> dict[str, object] | None:
        if value is not None:
            import jsonschema

            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON schema: {exc.message}") from exc
        return value


class SmokeCheck(Spec):
    """One request to the served model and what its answer must show. Give exactly one of
    'chat', 'completion' or 'embedding'; write another check for another request."""

    name: str | None = None
    """A title for reports (default: the kind and the start of the prompt)."""
    chat: str | None = None
    """A user message sent to /v1/chat/completions."""
    completion: str | None = None
    """A prompt sent to /v1/completions."""
    embedding: str | None = None
    """A text sent to /v1/embeddings."""
    system: str | None = None
    """An optional system message for chat checks."""
    expect: Expectation = Field(default_factory=Expectation)
    """What the answer must show."""
    max_latency_ms: Annotated[int, Field(ge=1, le=3_600_000)] | None = None
    """Longest the request may take, in milliseconds."""
    max_tokens: Annotated[int, Field(ge=1, le=2**20)] = 64
    """Most tokens the engine may generate for the answer."""

    @model_validator(mode="after")
    def _one_request(self) -> SmokeCheck:
        given = [k for k in ("chat", "completion", "embedding") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a smoke check needs exactly one of 'chat', 'completion', 'embedding'")
        if self.system is not None and self.chat is None:
            raise ValueError("'system' goes with 'chat' checks only")
        return self

    @property
    def kind(self) -> Literal["chat", "completion", "embedding"]:
        if self.chat is not None:
            return "chat"
        return "completion" if self.completion is not None else "embedding"

    @property
    def prompt(self) -> str:
        return self.chat or self.completion or self.embedding or ""

    @property
    def title(self) -> str:
        return self.name or f"{self.kind}: {self.prompt[:48]}"


# --- the deployment ----------------------------------------------------------------------------


class DeploymentSpec(Spec):
    """What to serve, how, on what, where, and how to prove it answers."""

    model: ModelSource
    """Where the weights come from: 'source: huggingface' with 'repo', or 'source: local' with
    'path'."""
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec)
    """How the weights are quantized for serving (default: not at all)."""
    serving: Serving = Field(default_factory=ServingSpec)
    """Engine settings."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """Accelerator type and count."""
    target: TargetSpec = Field(default_factory=lambda: LocalTargetSpec(kind="local"))
    """Where to run: 'kind: local' (default), 'ssh' or 'kubernetes'."""
    smoke: list[SmokeCheck] = Field(default_factory=list)
    """Requests sent after every deploy; each answer must meet its expectations."""
    slo: SloSpec | None = None
    """Service-level objectives: latency targets (TTFT, ITL, E2E at p50/p90/p99) and a minimum
    goodput that ``deployer bench`` measures against."""
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    """The workload and load ``deployer bench`` runs (default: synthetic 256-token prompts,
    128-token answers, concurrencies 1, 2 and 4, 30 s each)."""
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    """How a changed manifest replaces the serving engine (local and ssh targets)."""
    tune: TuneSpec = Field(default_factory=TuneSpec)
    """The engine settings ``deployer tune`` searches, and its budget."""

    @model_validator(mode="after")
    def _slo_gate_needs_slo(self) -> DeploymentSpec:
        if self.rollout.gate == "slo" and self.slo is None:
            raise ValueError("rollout.gate 'slo' needs an 'slo' to gate on")
        if self.benchmark.load.kind == "search" and self.slo is None:
            raise ValueError("benchmark.load kind 'search' looks for the SLO's limit: give 'slo'")
        return self


class ModelDeployment(Spec):
    """One open model, served somewhere, and the checks that prove it answers."""

    api_version: Literal["deployer/v1alpha1"]
    """Always 'deployer/v1alpha1'."""
    kind: Literal["ModelDeployment"]
    """Always 'ModelDeployment'."""
    metadata: Metadata
    """The deployment's name and labels."""
    spec: DeploymentSpec
    """What to deploy and how."""

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def served_model_name(self) -> str:
        return self.spec.serving.served_model_name or self.metadata.name
