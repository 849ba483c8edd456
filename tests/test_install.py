"""Continuo installed as a musician installs it, proved from outside the checkout.

The wheel is built from this checkout (`python -m build`: the sdist, then the wheel from the sdist, so both
must carry the model), installed into a new virtual environment in a temporary folder without the train extra
(music21), and run from a folder that is not the checkout: `continuo --screenshot` on a MIDI file,
`music-transformer generate`, the versions, and the menu entry installed into (and removed from) a temporary
XDG_DATA_HOME. The studio and the model library must find everything they read at run time (the bundled model, its
card, the icon, the launcher's files) inside the installed package, which is `continuo` and `music_transformer`.

Under CI=true a missing piece (the build tools, desktop-file-validate) fails the test; elsewhere it skips.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from music_transformer import Note, read_midi, write_midi

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
MAX_WHEEL_BYTES = 50 * 2**20
TRAIN_ONLY = ("music21",)  # the train extra's packages: the installed wheel runs without them
OWN = ("continuo", "music_transformer", "_continuo", "__editable__")  # this checkout's editable install
MOTIF = [Note(60 + (i * 5) % 12, 100, i * 0.25, i * 0.25 + 0.2) for i in range(24)]  # 6 s, 12 pitches, velocity 100
MOTIF_END = max(note.end for note in MOTIF)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def missing(what: str) -> None:
    """A part of the test this machine cannot run: a failure under CI, a skip elsewhere."""
    if CI:
        pytest.fail(f"{what}; under CI=true every part of the install test must run", pytrace=False)
    pytest.skip(what)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Installed:
    """A virtual environment outside the checkout with the built wheel installed, and a place to run it from."""

    def __init__(self, folder: Path, wheel: Path, sdist: Path) -> None:
        self.folder = folder
        self.wheel = wheel
        self.sdist = sdist
        self.venv = folder / "venv"
        self.bin = self.venv / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"
        self.elsewhere = folder / "elsewhere"  # the working folder of every command: not the checkout
        self.elsewhere.mkdir()
        self.home = folder / "home"
        self.home.mkdir()
        self.site_packages = Path(
            subprocess.run(
                [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a musician's shell: the venv's scripts first on PATH, nothing that points into the
        checkout (no PYTHONPATH, no CONTINUO_MODEL), a home of its own, no display, one thread."""
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "CONTINUO_MODEL")}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            CONTINUO_HOME=str(self.home / "continuo"),
            QT_QPA_PLATFORM="offscreen",
            OMP_NUM_THREADS="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(extra)
        return env

    def run(self, *command: str | Path, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        """Runs one of the venv's commands (`continuo`, `music-transformer`, `python`) from outside the checkout."""
        program = shutil.which(str(command[0]), path=str(self.bin))
        assert program, f"{command[0]} is not installed in {self.bin}"
        result = subprocess.run(
            [program, *map(str, command[1:])],
            cwd=self.elsewhere,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """Builds the sdist and the wheel, makes a new venv and installs the wheel into it."""
    for module in ("build", "hatchling"):
        if importlib.util.find_spec(module) is None:
            missing(f"the Python package {module!r} is not installed (pip install -e '.[test]')")
    folder = tmp_path_factory.mktemp("install")
    dist = folder / "dist"
    # No build isolation: the build backend (hatchling) is the one installed with the test extras, so the build
    # needs no package index. `python -m build` writes nothing into the checkout; it builds the sdist, unpacks it
    # elsewhere and builds the wheel from that, so the wheel proves the sdist carries the model too.
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list(dist.glob("continuo-*.whl"))
    sdists = list(dist.glob("continuo-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(path.name for path in dist.iterdir())

    # The venv reuses the packages already installed for the tests (torch, PySide6... ~1 GB) instead of
    # downloading them. `venv --system-site-packages` is not enough: when the tests run in a virtual environment
    # (.venv), "system" means the base interpreter's site-packages, not .venv's. So the new venv gets a .pth file
    # naming a folder of links to what the site-packages folders this interpreter reads hold: Python appends it
    # to sys.path after the venv's own site-packages (so the installed wheel comes first). A plain path line in a
    # .pth does not run the .pth files inside that folder, so .venv's editable install (a .pth that puts the
    # checkout on sys.path) does not follow: the checkout stays out of reach, which the tests below check.
    # The links leave out the train extra (music21) and this project's own packages and metadata: the wheel
    # must run the studio and `generate` with only its runtime dependencies, as a musician installs it.
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    shared = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        shared.append(site.getusersitepackages())
    shared = list(dict.fromkeys(path for path in shared if Path(path).is_dir() and Path(path) != ROOT))
    dependencies = folder / "dependencies"
    dependencies.mkdir()
    for path in shared:
        for entry in sorted(Path(path).iterdir()):
            link = dependencies / entry.name
            left_out = entry.name.lower().startswith(TRAIN_ONLY + OWN) or entry.suffix == ".pth"
            if not left_out and not os.path.lexists(link):  # the first folder on sys.path wins, as in Python
                link.symlink_to(entry, target_is_directory=entry.is_dir())
    installed = Installed(folder, wheels[0], sdists[0])
    (installed.site_packages / "_continuo_test_dependencies.pth").write_text(f"{dependencies}\n")
    # The venv's Python runs pip (found through that .pth, whatever its version) and installs the wheel alone
    # into the venv: its dependencies are the ones above.
    pip = subprocess.run(
        [installed.python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", str(wheels[0])],
        cwd=installed.elsewhere,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return installed


def test_the_wheel_and_sdist_carry_the_model_and_its_card(installed):
    assert installed.wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{installed.wheel.stat().st_size / 2**20:.1f} MB"
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        for resource in (
            "continuo/resources/continuo.svg",
            "continuo/resources/continuo.desktop",
            "continuo/resources/continuo-mime.xml",
        ):
            assert resource in names
        # whatever is at assets/ when the wheel is built, byte for byte: the weights and their config
        for model_file in ("default.safetensors", "default.json"):
            packaged_model = hashlib.sha256(wheel.read(f"music_transformer/assets/{model_file}")).hexdigest()
            assert packaged_model == sha256(ROOT / "assets" / model_file)
        assert not any(name.endswith(".pt") for name in names)  # the model ships as data only
        assert wheel.read("music_transformer/assets/README.md") == (ROOT / "assets" / "README.md").read_bytes()
    with tarfile.open(installed.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"assets/default.safetensors", "assets/default.json", "assets/README.md", "continuo/desktop.py"} <= names
    assert "pyproject.toml" in names


def test_the_wheel_installs_continuo_and_the_library_and_nothing_else(installed):
    version = installed.wheel.name.split("-")[1]
    metadata_folder = f"continuo-{version}.dist-info"
    with zipfile.ZipFile(installed.wheel) as wheel:
        top_level = {name.split("/", 1)[0] for name in wheel.namelist()}
        metadata = wheel.read(f"{metadata_folder}/METADATA").decode("utf-8")
    assert top_level == {"continuo", "music_transformer", metadata_folder}
    installed_names = {path.name for path in installed.site_packages.iterdir()}
    assert installed_names == {"continuo", "music_transformer", metadata_folder, "_continuo_test_dependencies.pth"}
    # music21 only with the train extra; every other requirement is the studio's or generation's
    requirements = re.findall(r"^Requires-Dist:\s*(.+)$", metadata, re.MULTILINE)
    music21 = [line for line in requirements if re.match(r"music21\b", line)]
    assert music21 and all(re.search(r"extra\s*==\s*[\"']train[\"']", line) for line in music21), music21
    print(f"\n{installed.wheel.name}: {installed.wheel.stat().st_size / 2**20:.1f} MiB, top-level {sorted(top_level)}")


def test_the_installed_studio_runs_without_the_train_extra_and_train_names_it(installed):
    # this venv has no music21 (the fixture leaves it out): the other tests run the studio and generate without it
    probe = installed.run("python", "-c", "import music21")
    assert probe.returncode == 1 and "No module named 'music21'" in probe.stderr, probe.stderr
    result = installed.run("music-transformer", "train", "--data", "corpus", "--out", "run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("music-transformer train: "), result.stderr
    assert 'pip install "continuo[train]"' in result.stderr
    assert not (installed.elsewhere / "run").exists()


def test_the_wheel_is_tagged_for_this_platform_and_carries_the_c_step(installed):
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        if "music_transformer/_native/variants.json" not in names:
            missing("the wheel was built without the C step: no C compiler (make system installs gcc)")
        variants = json.loads(wheel.read("music_transformer/_native/variants.json"))["variants"]
        metadata = wheel.read(f"continuo-{installed.wheel.name.split('-')[1]}.dist-info/WHEEL").decode()
    # compiled parts inside: for this platform, for any Python 3 there (ctypes loads the library, not CPython)
    assert installed.wheel.name.endswith(f"-py3-none-{platform}.whl"), installed.wheel.name
    assert "Root-Is-Purelib: false" in metadata and f"Tag: py3-none-{platform}" in metadata
    assert variants and all(f"music_transformer/_native/{variant['file']}" in names for variant in variants)
    with tarfile.open(installed.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"hatch_build.py", "music_transformer/step.c"} <= names  # the wheel built from the sdist compiles it
    assert not any(name.startswith("music_transformer/_native/") for name in names)  # nothing compiled in it


def test_the_installed_library_decodes_with_the_c_step_without_a_compiler_or_a_temporary_folder(installed, tmp_path):
    temporary, tools = tmp_path / "tmp", tmp_path / "bin"
    temporary.mkdir()
    tools.mkdir()
    probe = installed.run(
        "python",
        "-c",
        "import shutil, torch\n"
        "from music_transformer import native, load_checkpoint\n"
        "from music_transformer.decoder import Decoder\n"
        "assert not any(map(shutil.which, ('cc', 'gcc', 'clang')))\n"
        "model = load_checkpoint(device='cpu')\n"
        "with torch.no_grad():\n"
        "    cache = model.new_cache()\n"
        "    model(torch.zeros(1, 5, dtype=torch.long), cache=cache)\n"
        "    decoder = Decoder(model, cache, 1)\n"
        "    for token in range(20):\n"
        "        decoder.step(torch.tensor([token]))\n"
        "print(decoder.native, native.library()._name)",
        PATH=f"{installed.bin}{os.pathsep}{tools}",  # no C compiler on it
        TMPDIR=str(temporary),
    )
    assert probe.returncode == 0, probe.stderr
    native, library = probe.stdout.split()[-2:]
    if native != "True" and "no C step" in probe.stderr:
        missing("the wheel was built without the C step: no C compiler (make system installs gcc)")
    assert native == "True", probe.stderr
    assert Path(library).resolve().is_relative_to(installed.site_packages.resolve())
    # torch makes its own compiler cache folder (torchinductor_USER) in the temp folder the first time a model is
    # built on the meta device, as the checkpoint's shape check does; nothing there is Continuo's or loaded from it
    written = [path.name for path in temporary.iterdir() if not path.name.startswith("torchinductor_")]
    assert written == [] and not (installed.home / ".cache" / "continuo").exists()


def test_both_commands_print_the_one_version(installed):
    version = installed.wheel.name.split("-")[1]  # the wheel's name carries pyproject.toml's version
    studio = installed.run("continuo", "--version")
    library = installed.run("music-transformer", "--version")
    assert studio.returncode == 0 and library.returncode == 0, studio.stderr + library.stderr
    assert studio.stdout.strip() == f"continuo {version}"
    assert library.stdout.strip() == f"music-transformer {version}"


def test_the_installed_package_loads_the_packaged_model_and_card(installed):
    probe = installed.run(
        "python",
        "-c",
        "import json, continuo, music_transformer\n"
        "from music_transformer.checkpoint import CHECKOUT_ASSETS, DEFAULT_CHECKPOINT, load_checkpoint\n"
        "from continuo.help import model_card, model_file\n"
        "from continuo.desktop import icon_file\n"
        "model = load_checkpoint(device='cpu')\n"
        "meta, card = model_card(model_file('default'))\n"
        "print(json.dumps({'studio': continuo.__file__, 'library': music_transformer.__file__,\n"
        "    'default': str(DEFAULT_CHECKPOINT), 'loaded': model.metadata['path'], 'card': card,\n"
        "    'checkout_model': (CHECKOUT_ASSETS / 'default.safetensors').exists(), 'icon': str(icon_file())}))",
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    inside = installed.site_packages.resolve()
    for key in ("studio", "library", "default", "loaded", "icon"):
        path = Path(found[key]).resolve()
        assert path.is_relative_to(inside), f"{key}: {path} is not in the venv's {inside}"
        assert not path.is_relative_to(ROOT), f"{key}: {path} is in the checkout"
    assert Path(found["loaded"]).resolve() == inside / "music_transformer" / "assets" / "default.safetensors"
    assert not found["checkout_model"]  # the installed package has no checkout to fall back on
    assert found["card"] == (ROOT / "assets" / "README.md").read_text("utf-8")[:200_000]  # About's model card


def test_the_installed_studio_renders_a_midi_file(installed):
    from PySide6.QtGui import QImage

    from continuo.piano_roll.state import Palette
    from continuo.song import MOTIF as MOTIF_PART

    write_midi(MOTIF, installed.elsewhere / "motif.mid")
    result = installed.run("continuo", "--screenshot", "out.png", "motif.mid", "--size", "1000x640")
    assert result.returncode == 0, result.stderr
    image = QImage(str(installed.elsewhere / "out.png")).convertToFormat(QImage.Format.Format_RGB32)
    assert (image.width(), image.height()) == (1000, 640)
    pixels = np.frombuffer(bytes(image.constBits()), np.uint32).reshape(image.height(), image.bytesPerLine() // 4)
    fill = Palette.note_fill(MOTIF_PART, 100).rgb() & 0xFFFFFF  # the motif's colour at velocity 100
    colour = (pixels & 0xFFFFFF) == fill
    # Note rectangles, not the velocity lane's thin stems: pixels whose 5x3 neighbourhood is all note colour.
    solid = np.ones_like(colour[1:-1, 2:-2])
    for dy in (-1, 0, 1):
        for dx in (-2, -1, 0, 1, 2):
            solid &= colour[1 + dy : colour.shape[0] - 1 + dy, 2 + dx : colour.shape[1] - 2 + dx]
    rows, columns = np.nonzero(solid)
    assert len(rows) >= 2500, f"only {len(rows)} pixels inside notes"
    assert len(np.unique(rows)) >= 100  # the 12 pitches, on rows of their own
    assert columns.max() - columns.min() >= 400  # zoomed to fit: the 6 seconds spread across the roll
    # Each separate note is a rectangle with one top-left corner (one note alone gives 1; its name written in it
    # when it is wide, a few more).
    left, above = np.zeros_like(solid), np.zeros_like(solid)
    left[:, 1:], above[1:, :] = solid[:, :-1], solid[:-1, :]
    assert (solid & ~left & ~above).sum() >= 20, "fewer notes drawn than the file's 24"


def test_the_installed_library_continues_a_motif(installed):
    write_midi(MOTIF, installed.elsewhere / "primer.mid")
    result = installed.run(
        "music-transformer",
        "generate",
        "--primer",
        "primer.mid",
        "--seconds",
        "5",
        "--out",
        "out.mid",
        "--seed",
        "1",
        "--device",
        "cpu",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    written = re.search(r"(\d+) primer notes and (\d+) new notes", result.stdout)
    assert written and int(written.group(1)) == len(MOTIF) and int(written.group(2)) >= 1, result.stdout
    notes = read_midi(installed.elsewhere / "out.mid")
    continuation = [note for note in notes if note.start >= MOTIF_END - 0.011]
    assert len(continuation) == int(written.group(2))
    assert max(note.end for note in continuation) <= MOTIF_END + 5.0 + 0.02


def desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text("utf-8"))
    return dict(parser["Desktop Entry"])


def test_the_menu_entry_installs_validates_and_uninstalls(installed, tmp_path):
    data_home = tmp_path / "data home"  # a space, as in a real home folder's name now and then
    result = installed.run("continuo", "--install-desktop", XDG_DATA_HOME=str(data_home))
    assert result.returncode == 0, result.stderr
    assert str(data_home) in result.stdout  # it says where it wrote
    entry = data_home / "applications" / "continuo.desktop"
    mime = data_home / "mime" / "packages" / "continuo.xml"
    icon = data_home / "icons" / "hicolor" / "scalable" / "apps" / "continuo.svg"
    mime_icon = data_home / "icons" / "hicolor" / "scalable" / "mimetypes" / "application-x-continuo.svg"
    for path in (entry, mime, icon, mime_icon):
        assert path.is_file(), f"{path} was not written"
        assert str(path) in result.stdout

    fields = desktop_entry(entry)
    assert fields["Name"] == "Continuo"
    assert fields["GenericName"] == "Music sketchpad"
    assert fields["Icon"] == "continuo"
    assert set(fields["Categories"].rstrip(";").split(";")) >= {"AudioVideo", "Audio", "Midi", "Music"}
    assert set(fields["MimeType"].rstrip(";").split(";")) >= {"application/x-continuo", "audio/midi"}
    program = fields["Exec"].split(" %f")[0]
    assert Path(program) == installed.bin / "continuo"  # the installed launcher, by its absolute path
    assert ElementTree.fromstring(icon.read_bytes()).tag.endswith("svg")
    types = ElementTree.parse(mime).getroot()
    namespace = "{http://www.freedesktop.org/standards/shared-mime-info}"
    continuo_type = types.find(f"{namespace}mime-type[@type='application/x-continuo']")
    assert continuo_type is not None
    assert continuo_type.find(f"{namespace}glob").get("pattern") == "*.continuo"
    if shutil.which("update-mime-database"):  # refreshed: the desktop's own database knows the file type
        assert "application/x-continuo:*.continuo" in (data_home / "mime" / "globs2").read_text()

    validator = shutil.which("desktop-file-validate")
    validated = subprocess.run([validator, str(entry)], capture_output=True, text=True) if validator else None

    removed = installed.run("continuo", "--uninstall-desktop", XDG_DATA_HOME=str(data_home))
    assert removed.returncode == 0, removed.stderr
    assert str(data_home) in removed.stdout
    for path in (entry, mime, icon, mime_icon):
        assert not path.exists(), f"{path} was left behind"
    leftovers = [path for path in data_home.rglob("*") if path.is_file() and b"continuo" in path.read_bytes()]
    assert not leftovers  # the refreshed databases forgot it too
    again = installed.run("continuo", "--uninstall-desktop", XDG_DATA_HOME=str(data_home))
    assert again.returncode == 0 and "Nothing to remove" in again.stdout

    if validated is None:
        missing("desktop-file-validate is not installed (Debian: desktop-file-utils; make system installs it)")
    assert validated.returncode == 0 and "error" not in validated.stdout, validated.stdout + validated.stderr
