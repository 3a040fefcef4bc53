; Inno Setup 6 script: Hivetray's Windows installer (per-user, no administrator rights).
;
;   iscc /DAppVersion=0.1.0 /DSourceDir=..\..\dist\hivetray /DOutputDir=..\..\dist packaging\windows\hivetray.iss
;
; (packaging/windows/build.ps1 runs PyInstaller and then this.) Installs the PyInstaller one-dir
; build into %LOCALAPPDATA%\Programs\Hivetray:
;   hivetray.exe   the console command line (hivetray status, chat, self-test, quit, ...)
;   hivetrayw.exe  the same program without a console: the Start-menu entry and start at login
; Options: start at login (the same Run value Hivetray's Settings toggle writes), a desktop icon,
; adding hivetray.exe to the user's PATH. Uninstalling first asks a running Hivetray to quit
; (`hivetray quit`: it stops every worker), then ends whatever is left of it.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\hivetray"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#define AppName "Hivetray"
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"

[Setup]
; keep this AppId for every release: it is how upgrades and the uninstaller find the install
AppId={{6E0C7A52-3B1D-4F0B-9C55-2F6A1D9B7E41}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Hivetray
AppComments=Keep local llama.cpp models warm, healthy and cheap, from the tray
DefaultDirName={localappdata}\Programs\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
DisableDirPage=auto
; per-user: no UAC prompt, everything under the user's profile and HKCU
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir={#OutputDir}
OutputBaseFilename=Hivetray-{#AppVersion}-setup
SetupIconFile=hivetray.ico
UninstallDisplayIcon={app}\hivetrayw.exe
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; we stop Hivetray ourselves (PrepareToInstall / uninstall), with its own quit command
CloseApplications=no
ChangesEnvironment=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "autostart"; Description: "Start Hivetray when I sign in"; GroupDescription: "Start-up:"; Flags: unchecked
Name: "desktopicon"; Description: "Create a desktop icon"; GroupDescription: "Shortcuts:"; Flags: unchecked
Name: "addtopath"; Description: "Add the hivetray command to my PATH"; GroupDescription: "Command line:"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; an upgrade must not keep libraries the new version no longer ships
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\hivetrayw.exe"; Comment: "Local AI models in the tray"
Name: "{autoprograms}\{#AppName} quick chat"; Filename: "{app}\hivetrayw.exe"; Parameters: "toggle-chat"; Comment: "Show or hide Hivetray's quick chat"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\hivetrayw.exe"; Tasks: desktopicon

[Registry]
; the value name and form are those of hivetray.autostart (Settings -> Start at login)
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "Hivetray"; ValueData: """{app}\hivetrayw.exe"""; Tasks: autostart; Flags: uninsdeletevalue

[Run]
Filename: "{app}\hivetrayw.exe"; Description: "Start Hivetray now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; stop the app and its workers before files are removed: ask it first, then make sure
Filename: "{app}\hivetray.exe"; Parameters: "quit"; Flags: runhidden waituntilterminated; RunOnceId: "QuitHivetray"
Filename: "{sys}\taskkill.exe"; Parameters: "/F /T /IM hivetrayw.exe"; Flags: runhidden waituntilterminated; RunOnceId: "KillHivetrayW"
Filename: "{sys}\taskkill.exe"; Parameters: "/F /T /IM hivetray.exe"; Flags: runhidden waituntilterminated; RunOnceId: "KillHivetray"

[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"

[Code]
const
  EnvKey = 'Environment';

procedure StopHivetray(const AppDir: String);
var
  Code: Integer;
begin
  if FileExists(AppDir + '\hivetray.exe') then
    Exec(AppDir + '\hivetray.exe', 'quit', '', SW_HIDE, ewWaitUntilTerminated, Code);
  Exec(ExpandConstant('{sys}\taskkill.exe'), '/F /T /IM hivetrayw.exe', '', SW_HIDE, ewWaitUntilTerminated, Code);
  Exec(ExpandConstant('{sys}\taskkill.exe'), '/F /T /IM hivetray.exe', '', SW_HIDE, ewWaitUntilTerminated, Code);
end;

{ an upgrade over a running Hivetray: stop it (and its workers) before replacing files }
function PrepareToInstall(var NeedsRestart: Boolean): String;
begin
  StopHivetray(ExpandConstant('{app}'));
  Result := '';
end;

function PathHas(const Paths, Dir: String): Boolean;
begin
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') > 0;
end;

procedure AddToUserPath(const Dir: String);
var
  Paths: String;
begin
  if not RegQueryStringValue(HKCU, EnvKey, 'Path', Paths) then
    Paths := '';
  if PathHas(Paths, Dir) then
    exit;
  if (Paths <> '') and (Copy(Paths, Length(Paths), 1) <> ';') then
    Paths := Paths + ';';
  RegWriteExpandStringValue(HKCU, EnvKey, 'Path', Paths + Dir);
end;

procedure RemoveFromUserPath(const Dir: String);
var
  Paths: String;
  P: Integer;
begin
  if not RegQueryStringValue(HKCU, EnvKey, 'Path', Paths) then
    exit;
  Paths := ';' + Paths + ';';
  P := Pos(';' + Uppercase(Dir) + ';', Uppercase(Paths));
  if P = 0 then
    exit;
  Delete(Paths, P, Length(Dir) + 1);
  Paths := Copy(Paths, 2, Length(Paths) - 2);
  RegWriteExpandStringValue(HKCU, EnvKey, 'Path', Paths);
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('addtopath') then
    AddToUserPath(ExpandConstant('{app}'));
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usUninstall then
  begin
    StopHivetray(ExpandConstant('{app}'));
    { start at login may have been turned on from Hivetray's Settings, not by this installer }
    RegDeleteValue(HKCU, '{#RunKey}', 'Hivetray');
    RemoveFromUserPath(ExpandConstant('{app}'));
  end;
end;
