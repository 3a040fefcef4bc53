#!/usr/bin/env bash
# Build Hivetray for macOS: dist/Hivetray.app (PyInstaller one-dir inside a bundle, LSUIElement: it
# lives in the menu bar, no Dock icon), optionally signed, then dist/Hivetray-<version>-<arch>.dmg.
#
# usage: packaging/macos/build.sh [--no-dmg]
# env:   PYTHON              the Python with the project and its `package` extra (default .venv/bin/python)
#        CODESIGN_IDENTITY   "Developer ID Application: Name (TEAMID)" to sign (unsigned otherwise)
#        NOTARY_PROFILE      a `xcrun notarytool store-credentials` profile: notarise and staple the .dmg
#
# Signing and notarisation (needs an Apple Developer ID):
#   - every Mach-O file inside the bundle is signed with the hardened runtime and a secure
#     timestamp (codesign --deep is not used: it is deprecated and signs in the wrong order);
#     packaging/macos/entitlements.plist allows what CPython's ctypes (llama.cpp's log callback)
#     and the llama.cpp dylibs need;
#   - the .dmg is signed, submitted with `xcrun notarytool submit --wait`, then stapled
#     (`xcrun stapler staple`) so Gatekeeper accepts it offline;
#   - unsigned builds run after right-click -> Open (or `xattr -dr com.apple.quarantine Hivetray.app`).
# llama-cpp-python must be built with CMAKE_ARGS="-DGGML_NATIVE=OFF" (checked); on Apple silicon
# it uses Metal. Build on the oldest macOS you support (MACOSX_DEPLOYMENT_TARGET, default 11.0),
# once per architecture (arm64 on macos-14 runners, x86_64 on macos-13).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY="${PYTHON:-$ROOT/.venv/bin/python}"
DMG=1
[ "${1:-}" = "--no-dmg" ] && DMG=0
fail() { echo "macos/build.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

[ "$(uname)" = "Darwin" ] || fail "run this on macOS"
[ -x "$PY" ] || fail "no Python at $PY (python3 -m venv .venv && .venv/bin/pip install -e '.[package,dev]')"
"$PY" -c "import PyInstaller" 2>/dev/null \
  || CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install -q -e ".[package]"
info=$("$PY" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())")
VERSION=$("$PY" -c "import hivetray; print(hivetray.__version__)")
ARCH=$(uname -m)
export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-11.0}"
say "llama.cpp: $info"

say "PyInstaller -> dist/Hivetray.app"
rm -rf dist/Hivetray.app dist/hivetray
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist \
  --workpath build/pyinstaller packaging/hivetray.spec
APP=dist/Hivetray.app
[ -x "$APP/Contents/MacOS/hivetray" ] || fail "PyInstaller produced no $APP/Contents/MacOS/hivetray"
/usr/libexec/PlistBuddy -c "Print :LSUIElement" "$APP/Contents/Info.plist" | grep -q true \
  || fail "Info.plist lacks LSUIElement"
"$APP/Contents/MacOS/hivetray" --version

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  say "signing with $CODESIGN_IDENTITY (hardened runtime)"
  # inside out: libraries and extension modules first, then the executable, then the bundle
  find "$APP/Contents" -type f \( -name "*.dylib" -o -name "*.so" -o -perm -u+x \) -print0 \
    | while IFS= read -r -d '' file; do
        if file "$file" | grep -q "Mach-O"; then
          codesign --force --timestamp --options runtime \
            --entitlements packaging/macos/entitlements.plist --sign "$CODESIGN_IDENTITY" "$file"
        fi
      done
  codesign --force --timestamp --options runtime --entitlements packaging/macos/entitlements.plist \
    --sign "$CODESIGN_IDENTITY" "$APP"
  codesign --verify --strict --verbose=2 "$APP"
else
  say "not signed (set CODESIGN_IDENTITY to sign); ad-hoc signature only"
  codesign --force --deep --sign - "$APP" >/dev/null 2>&1 || true
fi

rm -f dist/SHA256SUMS
if [ "$DMG" -eq 1 ]; then
  packaging/macos/make-dmg.sh "$APP" "dist/Hivetray-$VERSION-$ARCH.dmg"
  # SHA256SUMS beside the .dmg, in `sha256sum --check` format (the release job combines it)
  (cd dist && shasum -a 256 "Hivetray-$VERSION-$ARCH.dmg" > SHA256SUMS)
  say "SHA256SUMS: $(cat dist/SHA256SUMS)"
fi
say "done"
