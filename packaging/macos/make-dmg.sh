#!/usr/bin/env bash
# Wrap Hivetray.app in a compressed disk image with an /Applications link (drag to install).
#   packaging/macos/make-dmg.sh dist/Hivetray.app dist/Hivetray-<version>-<arch>.dmg
# Signs the image when CODESIGN_IDENTITY is set, and notarises + staples it when NOTARY_PROFILE
# names a `xcrun notarytool store-credentials` profile as well.
set -euo pipefail
APP=${1:?usage: make-dmg.sh APP DMG}
DMG=${2:?usage: make-dmg.sh APP DMG}
fail() { echo "make-dmg.sh: $*" >&2; exit 1; }
[ -d "$APP" ] || fail "no app bundle at $APP"
command -v hdiutil >/dev/null || fail "hdiutil not found: run this on macOS"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
echo "==> hdiutil -> $DMG"
hdiutil create -volname "Hivetray" -srcfolder "$STAGE" -fs HFS+ -format UDZO \
  -imagekey zlib-level=9 -ov "$DMG" >/dev/null
hdiutil verify "$DMG" >/dev/null
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$DMG"
  if [ -n "${NOTARY_PROFILE:-}" ]; then
    echo "==> notarising (xcrun notarytool, waits for Apple's verdict)"
    xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
    spctl --assess --type open --context context:primary-signature --verbose=2 "$DMG"
  fi
fi
ls -l "$DMG"
