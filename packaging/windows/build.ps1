# Build Hivetray's Windows installer: PyInstaller one-dir (dist\hivetray\), then Inno Setup
# (dist\Hivetray-<version>-setup.exe).
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Python .venv\Scripts\python.exe] [-SkipInstaller]
#
# Needs: Python 3.11 with the project installed with the `package` extra, llama-cpp-python built
# with CMAKE_ARGS="-DGGML_NATIVE=OFF" (Visual Studio Build Tools + CMake compile it), and Inno
# Setup 6 (iscc.exe on PATH or in its default folder). The GitHub workflow
# .github/workflows/installers.yml runs exactly this.
param(
    [string]$Python = ".venv\Scripts\python.exe",
    [switch]$SkipInstaller
)
Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $Root

function Fail([string]$Message) { Write-Error "build.ps1: $Message"; exit 1 }

if (-not (Test-Path $Python)) { Fail "no Python at $Python (create .venv and pip install -e "".[package,dev]"")" }
& $Python -c "import PyInstaller" 2>$null
if ($LASTEXITCODE -ne 0) {
    Write-Host "==> installing the 'package' extra (PyInstaller)"
    $env:CMAKE_ARGS = if ($env:CMAKE_ARGS) { $env:CMAKE_ARGS } else { "-DGGML_NATIVE=OFF" }
    & $Python -m pip install -q -e ".[package]"
    if ($LASTEXITCODE -ne 0) { Fail "pip install failed" }
}
$info = & $Python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
if ($info -match "AVX512|AVX_VNNI|AMX") {
    Fail "llama-cpp-python was built for this CPU ($info); reinstall it with CMAKE_ARGS=-DGGML_NATIVE=OFF"
}
$Version = & $Python -c "import hivetray; print(hivetray.__version__)"

# the installer's icon, from the committed PNG (Pillow is a runtime dependency)
& $Python -c "from PIL import Image; Image.open('resources/icons/hivetray-256.png').save('packaging/windows/hivetray.ico', sizes=[(16,16),(24,24),(32,32),(48,48),(64,64),(128,128),(256,256)])"
if ($LASTEXITCODE -ne 0) { Fail "could not write packaging\windows\hivetray.ico" }

Write-Host "==> PyInstaller one-dir build -> dist\hivetray\"
$started = Get-Date
& $Python -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build\pyinstaller packaging\hivetray.spec
if ($LASTEXITCODE -ne 0) { Fail "PyInstaller failed" }
foreach ($exe in "hivetray.exe", "hivetrayw.exe") {
    if (-not (Test-Path "dist\hivetray\$exe")) { Fail "dist\hivetray\$exe is missing" }
}
& dist\hivetray\hivetray.exe --version
if ($LASTEXITCODE -ne 0) { Fail "the frozen hivetray.exe does not start" }
Write-Host ("==> one-dir built in {0:N0} s" -f ((Get-Date) - $started).TotalSeconds)

if ($SkipInstaller) { exit 0 }
$iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) {
    foreach ($dir in "${env:ProgramFiles(x86)}\Inno Setup 6", "$env:ProgramFiles\Inno Setup 6", "$env:LOCALAPPDATA\Programs\Inno Setup 6") {
        if (Test-Path "$dir\ISCC.exe") { $iscc = "$dir\ISCC.exe"; break }
    }
}
if (-not $iscc) { Fail "Inno Setup 6 (ISCC.exe) not found: install it (choco install innosetup / winget install JRSoftware.InnoSetup)" }
Write-Host "==> Inno Setup -> dist\Hivetray-$Version-setup.exe"
& $iscc /Q "/DAppVersion=$Version" "/DSourceDir=$Root\dist\hivetray" "/DOutputDir=$Root\dist" packaging\windows\hivetray.iss
if ($LASTEXITCODE -ne 0) { Fail "iscc failed" }
Get-Item "dist\Hivetray-$Version-setup.exe" | Format-Table Name, Length

# SHA256SUMS beside the installer, in `sha256sum --check` format (lower-case hex, two spaces, the
# name; LF line ends, no BOM) so the release job can combine it with the other platforms'
$setupName = "Hivetray-$Version-setup.exe"
$hash = (Get-FileHash -Algorithm SHA256 "dist\$setupName").Hash.ToLowerInvariant()
[System.IO.File]::WriteAllText((Join-Path $Root "dist\SHA256SUMS"), "$hash  $setupName`n",
    (New-Object System.Text.UTF8Encoding $false))
Write-Host "==> SHA256SUMS: $hash  $setupName"
