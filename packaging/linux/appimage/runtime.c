/*
 * Hivetray's AppImage runtime: a self-extracting runtime for the AppImage type-2 file layout.
 *
 * Why our own: the official runtime (AppImage/type2-runtime) and appimagetool are only
 * published as downloads from GitHub, which this project's build machines cannot reach; Debian
 * ships neither. This runtime is built here from Debian packages (gcc, libsquashfuse-dev and the
 * static decompression libraries) and produces the same layout:
 *
 *     [ this ELF executable, "AI\x02" at byte 8 ][ squashfs image of the AppDir ]
 *
 * so `file`, AppImageLauncher-style tools and `squashfuse -o offset=N` see a type-2 AppImage.
 *
 * What it does NOT do: mount the image with FUSE. Every start runs in "extract and run" mode:
 * the AppDir is extracted once into a cache folder keyed by the image's squashfs superblock
 * (size, creation time, inode count), then AppDir/AppRun is executed; later starts find the
 * folder and start at once. FUSE is not needed at all (works in containers, on systems without
 * libfuse2).
 *
 * Options (same names as the official runtime):
 *   --appimage-extract [PATTERN]   extract (the files matching the fnmatch PATTERN) to ./squashfs-root
 *   --appimage-offset              print the offset of the squashfs image
 *   --appimage-cachedir            print where the AppDir is (or will be) extracted
 *   --appimage-version             print the runtime's name and version
 *   --appimage-help                this help
 * Environment given to AppRun: APPIMAGE (this file's absolute path), APPDIR (the extracted
 * AppDir), ARGV0 (argv[0] as typed), OWD (the working directory at start).
 * The cache lives in $APPIMAGE_EXTRACT_DIR, else $XDG_CACHE_HOME/appimage-extract, else
 * ~/.cache/appimage-extract; a folder there can be deleted at any time when the app is not running.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* squashfuse's config.h defines _POSIX_C_SOURCE again (the system headers are already in) */
#undef _POSIX_C_SOURCE
#include <squashfuse.h>

#define RUNTIME_NAME "hivetray-appimage-runtime"
#define RUNTIME_VERSION "1"

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "AppImage runtime: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

/* snprintf into a fixed buffer; a path that does not fit is an error, never truncated */
#define FMT(buf, ...)                                                          \
    do {                                                                       \
        if (snprintf((buf), sizeof(buf), __VA_ARGS__) >= (int)sizeof(buf))    \
            die("path too long: %s", (buf));                                   \
    } while (0)

/* The squashfs image starts where this ELF file ends: after its section header table. */
static off_t elf_size(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open %s", path);
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0
        || eh.e_ident[EI_CLASS] != ELFCLASS64)
        die("%s is not a 64-bit ELF file", path);
    close(fd);
    off_t end = (off_t)(eh.e_shoff + (uint64_t)eh.e_shentsize * eh.e_shnum);
    off_t ph_end = (off_t)(eh.e_phoff + (uint64_t)eh.e_phentsize * eh.e_phnum);
    return end > ph_end ? end : ph_end;
}

static int mkdirs(char *path, mode_t mode) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, mode) != 0 && errno != EEXIST) {
            *p = '/';
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int write_file(sqfs *fs, sqfs_inode *inode, const char *dest) {
    int out = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, inode->base.mode & 0777);
    if (out < 0)
        return -1;
    static char buf[1 << 20];
    uint64_t size = inode->xtra.reg.file_size;
    for (uint64_t off = 0; off < size;) {
        sqfs_off_t want = (sqfs_off_t)((size - off) < sizeof buf ? (size - off) : sizeof buf);
        if (sqfs_read_range(fs, inode, (sqfs_off_t)off, &want, buf) != SQFS_OK || want <= 0) {
            close(out);
            return -1;
        }
        for (sqfs_off_t done = 0; done < want;) {
            ssize_t n = write(out, buf + done, (size_t)(want - done));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                close(out);
                return -1;
            }
            done += n;
        }
        off += (uint64_t)want;
    }
    if (fchmod(out, inode->base.mode & 07777) != 0 || close(out) != 0)
        return -1;
    return 0;
}

/* Extract the whole image (or what matches pattern) into dest; 0 on success. */
static int extract(const char *image, off_t offset, const char *dest, const char *pattern) {
    int fd = open(image, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    sqfs fs;
    if (sqfs_init(&fs, fd, (size_t)offset) != SQFS_OK) {
        fprintf(stderr, "AppImage runtime: no squashfs image at offset %lld of %s\n",
                (long long)offset, image);
        close(fd);
        return -1;
    }
    char root[PATH_MAX];
    FMT(root, "%s", dest);
    if (mkdirs(root, 0755) != 0) {
        perror(dest);
        return -1;
    }
    sqfs_traverse trv;
    if (sqfs_traverse_open(&trv, &fs, sqfs_inode_root(&fs)) != SQFS_OK)
        return -1;
    sqfs_err err = SQFS_OK;
    int rc = 0;
    while (rc == 0 && sqfs_traverse_next(&trv, &err)) {
        if (trv.dir_end)
            continue;
        if (pattern != NULL && fnmatch(pattern, trv.path, FNM_LEADING_DIR) != 0)
            continue;
        char path[PATH_MAX];
        FMT(path, "%s/%s", dest, trv.path);
        sqfs_inode inode;
        if (sqfs_inode_get(&fs, &inode, trv.entry.inode) != SQFS_OK) {
            rc = -1;
            break;
        }
        if (pattern != NULL) { /* parents of a matching entry may not have matched */
            char parent[PATH_MAX];
            FMT(parent, "%s", path);
            char *slash = strrchr(parent, '/');
            if (slash != NULL && slash != parent) {
                *slash = '\0';
                mkdirs(parent, 0755);
            }
        }
        mode_t type = inode.base.mode & S_IFMT;
        if (type == S_IFDIR) {
            if (mkdir(path, (inode.base.mode & 0777) | 0700) != 0 && errno != EEXIST)
                rc = -1;
        } else if (type == S_IFREG) {
            unlink(path);
            rc = write_file(&fs, &inode, path);
        } else if (type == S_IFLNK) {
            size_t size = 0;
            if (sqfs_readlink(&fs, &inode, NULL, &size) != SQFS_OK) {
                rc = -1;
                break;
            }
            char *target = malloc(size + 1);
            if (target == NULL || sqfs_readlink(&fs, &inode, target, &size) != SQFS_OK) {
                free(target);
                rc = -1;
                break;
            }
            target[size] = '\0';
            unlink(path);
            if (symlink(target, path) != 0)
                rc = -1;
            free(target);
        } /* devices, fifos, sockets: an AppDir has none */
        if (rc != 0)
            perror(path);
    }
    if (err != SQFS_OK)
        rc = -1;
    sqfs_traverse_close(&trv);
    sqfs_destroy(&fs);
    close(fd);
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rmtree(const char *path) {
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "AppImage runtime: could not remove %s\n", path);
}

/* A key that changes whenever the image does: from the squashfs superblock. */
static void image_key(const char *image, off_t offset, char *out, size_t len) {
    int fd = open(image, O_RDONLY | O_CLOEXEC);
    unsigned char sb[96];
    if (fd < 0 || pread(fd, sb, sizeof sb, offset) != (ssize_t)sizeof sb)
        die("cannot read the squashfs superblock of %s", image);
    close(fd);
    if (memcmp(sb, "hsqs", 4) != 0)
        die("no squashfs image inside %s", image);
    uint32_t inodes, mkfs_time;
    uint64_t bytes_used;
    memcpy(&inodes, sb + 4, 4);
    memcpy(&mkfs_time, sb + 8, 4);
    memcpy(&bytes_used, sb + 40, 8);
    /* FNV-1a over the name as well, so two apps built in the same second do not collide */
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = base; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    snprintf(out, len, "%08x-%llx-%u-%016llx", mkfs_time, (unsigned long long)bytes_used, inodes,
             (unsigned long long)h);
}

static void cache_root(char *out, size_t len) {
    const char *dir = getenv("APPIMAGE_EXTRACT_DIR");
    if (dir != NULL && *dir)
        snprintf(out, len, "%s", dir);
    else if ((dir = getenv("XDG_CACHE_HOME")) != NULL && *dir == '/')
        snprintf(out, len, "%s/appimage-extract", dir);
    else if ((dir = getenv("HOME")) != NULL && *dir)
        snprintf(out, len, "%s/.cache/appimage-extract", dir);
    else
        snprintf(out, len, "/tmp/appimage-extract-%u", (unsigned)getuid());
}

int main(int argc, char **argv) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        die("cannot find my own file (%s)", "/proc/self/exe");
    self[n] = '\0';
    const char *image = getenv("TARGET_APPIMAGE") ? getenv("TARGET_APPIMAGE") : self;
    off_t offset = elf_size(image);

    const char *opt = argc > 1 ? argv[1] : "";
    if (strcmp(opt, "--appimage-offset") == 0) {
        printf("%lld\n", (long long)offset);
        return 0;
    }
    if (strcmp(opt, "--appimage-version") == 0) {
        printf("%s %s (type-2 layout, extract-and-run; no FUSE mount)\n", RUNTIME_NAME,
               RUNTIME_VERSION);
        return 0;
    }
    if (strcmp(opt, "--appimage-help") == 0) {
        printf("Options: --appimage-extract [PATTERN] | --appimage-offset | --appimage-cachedir |"
               " --appimage-version | --appimage-help\nAnything else is passed to the app.\n");
        return 0;
    }
    if (strcmp(opt, "--appimage-extract") == 0) {
        if (extract(image, offset, "squashfs-root", argc > 2 ? argv[2] : NULL) != 0)
            die("extracting %s failed", image);
        return 0;
    }

    char root[PATH_MAX], key[128], appdir[PATH_MAX], marker[PATH_MAX];
    cache_root(root, sizeof root);
    image_key(image, offset, key, sizeof key);
    FMT(appdir, "%s/%s", root, key);
    FMT(marker, "%s/.extracted", appdir);
    if (strcmp(opt, "--appimage-cachedir") == 0) {
        printf("%s\n", appdir);
        return 0;
    }
    if (access(marker, F_OK) != 0) {
        /* extract beside the final folder, then rename: a concurrent start or an interrupted
           extraction never leaves a half-written AppDir in place */
        char tmp[PATH_MAX];
        FMT(tmp, "%s.tmp-%d", appdir, (int)getpid());
        if (mkdirs(root, 0700) != 0)
            die("cannot create %s", root);
        if (extract(image, offset, tmp, NULL) != 0)
            die("extracting the app to %s failed (disk full?)", tmp);
        char done[PATH_MAX];
        FMT(done, "%s/.extracted", tmp);
        int fd = open(done, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            die("cannot write %s", done);
        close(fd);
        if (rename(tmp, appdir) != 0) {
            if (access(marker, F_OK) != 0)
                die("cannot move the extracted app to %s", appdir);
            rmtree(tmp); /* another start won the race: use its copy */
        }
    }

    char apprun[PATH_MAX], cwd[PATH_MAX];
    FMT(apprun, "%s/AppRun", appdir);
    setenv("APPIMAGE", image, 1);
    setenv("APPDIR", appdir, 1);
    setenv("ARGV0", argv[0], 1);
    if (getcwd(cwd, sizeof cwd) != NULL)
        setenv("OWD", cwd, 1);
    argv[0] = apprun;
    execv(apprun, argv);
    die("cannot run %s", apprun);
    return 1;
}
