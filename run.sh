#!/usr/bin/env bash
# rtengine: set-up and the two entry points.
#
#   ./run.sh demo     set up, then render generated music through the demo chain
#   ./run.sh test     set up, then run the test suite (extra arguments go to pytest)
#
# Set-up is idempotent: system packages (installed when run as root, otherwise
# the exact apt-get line is printed), a virtual environment in .venv, and the
# package with its compiled C kernels (pip install -e ".[dev]").
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(gcc python3-dev python3-venv libsndfile1 jackd2 libjack-jackd2-dev libportaudio2 libfftw3-dev
              pipewire pipewire-bin pipewire-jack pipewire-pulse wireplumber dbus pulseaudio-utils
              zam-plugins ardour
              fluid-soundfont-gm libfluidsynth3 ffmpeg asterisk-core-sounds-en-g722 sonic-pi-samples)

say() { printf 'run.sh: %s\n' "$*" >&2; }

system_packages() {
    command -v dpkg >/dev/null 2>&1 || { say "not a Debian/Ubuntu system: install a C compiler and Python >= 3.11 headers yourself"; return 0; }
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        say "installing system packages: ${missing[*]}"
        echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        say "missing system packages; run:"
        echo "  sudo sh -c 'echo \"jackd2 jackd/tweak_rt_limits boolean false\" | debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}'" >&2
        exit 1
    fi
}

python_env() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        say "$PYTHON is $("$PYTHON" --version 2>&1); rtengine needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        "$PYTHON" -m venv .venv
    fi
    # reinstall only when the build inputs change
    local stamp
    stamp=$(cat pyproject.toml setup.py kernels/_build.py rtengine/native/_runner_build.py \
                kernels/c/*.c kernels/c/*.h rtengine/native/*.c rtengine/native/*.h \
                rtengine/bridge/*.c rtengine/bridge/*.h | sha256sum | cut -c1-16)
    if [ "$(cat .venv/.rtengine-stamp 2>/dev/null)" != "$stamp" ]; then
        say "installing rtengine and its dependencies into .venv (compiles the C kernels)"
        local log=.venv/pip-install.log
        if ! { .venv/bin/python -m pip install --disable-pip-version-check -U pip "setuptools>=77" wheel &&
               .venv/bin/python -m pip install --disable-pip-version-check -e ".[dev]"; } >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            say "installation failed; the whole log is in $ROOT/$log"
            exit 1
        fi
        echo "$stamp" > .venv/.rtengine-stamp
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        system_packages; python_env
        exec .venv/bin/rtengine demo "${@:-out}" ;;
    test)
        system_packages; python_env
        exec .venv/bin/python -m pytest -q --durations=15 "$@" ;;
    setup)
        system_packages; python_env ;;
    *)
        echo "usage: ./run.sh demo [OUT_DIR] | ./run.sh test [PYTEST_ARGS] | ./run.sh setup" >&2
        exit 2 ;;
esac
