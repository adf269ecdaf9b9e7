#!/usr/bin/env python3
"""Write the differential tar corpus: one small image layer (or several) per
header quirk, and cases.json saying what each case must give.

    python3 tests/tar_corpus/generate.py OUT_DIR

Each case is read three ways by tests/integration/tar_corpus.rs: `coldpress analyze
--list-files`, `coldpress optimize` then `umoci unpack` of the output, and
`umoci unpack` of the source. umoci reads with Go's archive/tar, as containerd
and Docker do, so "agree" means coldpress sees what Lambda's workers see.
"refuse" cases are ones coldpress declines on purpose (docs/decisions.md,
"Reading tar headers"), and the message it must give.

Python's tarfile writes the well-formed cases; the quirks no tarfile writes are
raw 512-byte blocks. Only this generator is kept in git, never its output.
"""

import io
import json
import os
import sys
import tarfile

BLOCK = 512
MTIME = 1700000000


def octal(n, width):
    """A NUL-terminated octal field, as tar writers usually write it."""
    return ("%0*o" % (width - 1, n)).encode() + b"\0"


def base256(n, width):
    """GNU base-256: top bit set, two's complement, big endian."""
    if n < 0:
        n += 1 << (8 * width)
        b = n.to_bytes(width, "big")
        return bytes([b[0] | 0xC0]) + b[1:]
    b = n.to_bytes(width, "big")
    return bytes([b[0] | 0x80]) + b[1:]


def put(buf, off, data):
    buf[off : off + len(data)] = data


def header(
    name,
    typeflag=b"0",
    size=0,
    mode=0o644,
    uid=0,
    gid=0,
    mtime=MTIME,
    linkname=b"",
    magic=b"ustar\x00",
    version=b"00",
    prefix=b"",
    fields=None,
    signed_checksum=False,
    checksum=None,
):
    """One raw header block. `fields` overrides raw byte ranges: {offset: bytes}."""
    b = bytearray(BLOCK)
    put(b, 0, name)
    put(b, 100, mode if isinstance(mode, bytes) else octal(mode, 8))
    put(b, 108, uid if isinstance(uid, bytes) else octal(uid, 8))
    put(b, 116, gid if isinstance(gid, bytes) else octal(gid, 8))
    put(b, 124, size if isinstance(size, bytes) else octal(size, 12))
    put(b, 136, mtime if isinstance(mtime, bytes) else octal(mtime, 12))
    put(b, 156, typeflag)
    put(b, 157, linkname)
    put(b, 257, magic)
    put(b, 263, version)
    if magic.startswith(b"ustar"):
        put(b, 265, b"root")
        put(b, 297, b"root")
        put(b, 329, octal(0, 8))
        put(b, 337, octal(0, 8))
    put(b, 345, prefix)
    for off, data in (fields or {}).items():
        put(b, off, data)
    put(b, 148, b" " * 8)
    if signed_checksum:
        total = sum(c - 256 if c >= 128 else c for c in b)
    else:
        total = sum(b)
    if checksum is not None:
        total = checksum
    put(b, 148, ("%06o" % total).encode() + b"\0 ")
    return bytes(b)


def data(content):
    return content + b"\0" * (-len(content) % BLOCK)


def entry(name, content=b"", **kw):
    return header(name, size=len(content), **kw) + data(content)


def pax_record(key, value):
    body = len(key) + len(value) + 3
    n = body + 1
    while n != body + len(str(n)):
        n = body + len(str(n))
    return str(n).encode() + b" " + key + b"=" + value + b"\n"


def pax(records, typeflag=b"x", name=b"PaxHeaders/x"):
    body = b"".join(pax_record(k, v) for k, v in records)
    return header(name, typeflag=typeflag, size=len(body)) + data(body)


def gnu_long(typeflag, value):
    body = value + b"\0"
    return (
        header(b"././@LongLink", typeflag=typeflag, size=len(body), magic=b"ustar ", version=b" \x00")
        + data(body)
    )


END = b"\0" * (2 * BLOCK)


def with_tarfile(fmt, build):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        build(t)
    return out.getvalue()


def tf_add(t, name, content=b"", **kw):
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = kw.pop("mtime", MTIME)
    info.mode = kw.pop("mode", 0o644)
    for k, v in kw.items():
        setattr(info, k, v)
    t.addfile(info, io.BytesIO(content) if content else None)


def tf_dir(t, name, mode=0o755):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = MTIME
    t.addfile(info)


def tf_link(t, name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.mtime = MTIME
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    t.addfile(info)


LONG = "long-" + "d" * 60 + "/" + "e" * 70 + "/" + "f" * 90 + ".txt"

CASES = []


def case(name, layers, expect="agree", says=None, why="", **extra):
    CASES.append(dict(name=name, layers=layers, expect=expect, says=says, why=why, **extra))


def build_cases():
    # Old-style directories: a regular-file typeflag and a trailing slash.
    case(
        "old-style-dir-nul",
        [entry(b"olddir/", typeflag=b"\0", mode=0o755) + entry(b"olddir/f.txt", b"in old dir") + END],
        why="typeflag NUL + trailing slash is a directory for Go (TypeRegA rule)",
    )
    case(
        "old-style-dir-nul-alone",
        [entry(b"olddir/", typeflag=b"\0", mode=0o750) + END],
    )
    case(
        "old-style-dir-zero",
        [entry(b"zerodir/", typeflag=b"0", mode=0o755) + END],
        why="typeflag '0' + trailing slash: Go keeps TypeReg",
    )
    case(
        "regular-file-typeflag-nul",
        [entry(b"nulfile.txt", b"old typeflag", typeflag=b"\0") + END],
    )
    case(
        "old-style-dir-with-size",
        [
            header(b"sized/", typeflag=b"\0", size=BLOCK, mode=0o755)
            + entry(b"sized/child.txt", b"read as the next header by Go")
            + END
        ],
        why="a directory carries no data: Go reads the next block as a header",
    )
    # GNU, USTAR, STAR and PAX precedence.
    case(
        "gnu-magic-ascii-prefix",
        [entry(b"name.txt", b"gnu+prefix", magic=b"ustar ", version=b" \x00", prefix=b"pfx") + END],
        why="atime/ctime do not parse: Go falls back to the prefix (golang/go#12594)",
    )
    case(
        "gnu-magic-octal-prefix",
        [
            entry(b"name.txt", b"gnu+times", magic=b"ustar ", version=b" \x00", prefix=octal(0o17, 12))
            + END
        ],
        why="the field parses as a GNU atime: no prefix",
    )
    case(
        "ustar-prefix",
        [entry(b"name.txt", b"ustar prefix", prefix=b"some/where") + END],
    )
    case(
        "star-prefix",
        [entry(b"name.txt", b"star", prefix=b"starpfx", fields={508: b"tar\0"}) + END],
    )
    case(
        "v7-ignores-prefix",
        [entry(b"v7.txt", b"v7", magic=b"\0" * 6, version=b"\0\0", prefix=b"notaprefix") + END],
    )
    case(
        "gnu-magic-wrong-version",
        [entry(b"gv.txt", b"gnu magic, ustar version", magic=b"ustar ", version=b"00", prefix=b"nope") + END],
        why="neither USTAR nor GNU: Go reads it as V7, prefix ignored",
    )
    case(
        "gnu-long-name",
        [with_tarfile(tarfile.GNU_FORMAT, lambda t: tf_add(t, LONG, b"long"))],
    )
    case(
        "gnu-long-link",
        [
            with_tarfile(
                tarfile.GNU_FORMAT,
                lambda t: (tf_add(t, LONG, b"long"), tf_link(t, "short-link", "/" + LONG)),
            )
        ],
    )
    case(
        "pax-long-path-and-linkpath",
        [
            with_tarfile(
                tarfile.PAX_FORMAT,
                lambda t: (
                    tf_add(t, LONG, b"pax long"),
                    tf_link(t, "pax-link", LONG),
                    tf_link(t, "pax-hard", LONG, tarfile.LNKTYPE),
                ),
            )
        ],
    )
    case(
        "pax-path-overrides-header-name",
        [pax([(b"path", b"from-pax.txt")]) + entry(b"from-header.txt", b"which name?") + END],
    )
    case(
        "gnu-long-name-beats-pax-path",
        [
            gnu_long(b"L", b"from-gnu.txt")
            + pax([(b"path", b"from-pax.txt")])
            + entry(b"from-header.txt", b"gnu wins")
            + END
        ],
        why="Go applies GNU long names after merging PAX records",
    )
    case(
        "second-pax-header-replaces-first",
        [
            pax([(b"path", b"first-pax.txt")])
            + pax([(b"mtime", b"1600000000")])
            + entry(b"header-name.txt", b"only the last PAX header counts")
            + END
        ],
    )
    case(
        "pax-size-override",
        [pax([(b"size", b"5")]) + header(b"pax-size.txt", size=0) + data(b"hello") + END],
    )
    case(
        "pax-uid-gid-override",
        [pax([(b"uid", b"3000000"), (b"gid", b"3000001")]) + entry(b"ids.txt", b"big ids") + END],
    )
    case(
        "pax-mtime-fraction",
        [pax([(b"mtime", b"1700000000.123456789")]) + entry(b"frac.txt", b"ns") + END],
    )
    case(
        "pax-mtime-long-fraction",
        [pax([(b"mtime", b"1700000000.1234567891234")]) + entry(b"frac2.txt", b"ns") + END],
    )
    case(
        "pax-empty-path-keeps-header-name",
        [pax([(b"path", b"")]) + entry(b"kept-name.txt", b"empty PAX value") + END],
    )
    case(
        "pax-xattr",
        [
            pax([(b"SCHILY.xattr.user.origin", b"corpus"), (b"SCHILY.xattr.user.empty2", b"x")])
            + entry(b"xattr.txt", b"has xattrs")
            + END
        ],
    )
    case(
        "pax-xattr-nul-in-key",
        [pax([(b"SCHILY.xattr.user.x\0y", b"1")]) + entry(b"nulkey.txt", b"x") + END],
        expect="refuse",
        says="NUL byte in the PAX record",
        why="Go's reader refuses it; written back, it breaks every reader",
    )
    case(
        "pax-path-with-nul",
        [pax([(b"path", b"etc/pass\0wd")]) + entry(b"nulpath.txt", b"x") + END],
        expect="refuse",
        says="NUL",
    )
    case(
        "pax-global-header-ignored",
        [
            pax([(b"path", b"global-name.txt"), (b"uid", b"77")], typeflag=b"g", name=b"pax_global_header")
            + entry(b"after-global.txt", b"global headers do not apply")
            + END
        ],
        expect="umoci-differs",
        umoci_says="unknown typeflag",
        paths=["after-global.txt"],
        why="containerd ignores global headers (umoci refuses them)",
    )
    case(
        "pax-malformed-record",
        [header(b"PaxHeaders/x", typeflag=b"x", size=8) + data(b"99 a=b\n\n") + entry(b"f.txt", b"x") + END],
        expect="refuse",
        says="malformed PAX record",
    )
    # Numeric fields.
    case(
        "all-nul-uid-gid",
        [entry(b"nul-ids.txt", b"ids are zero", uid=b"\0" * 8, gid=b"\0" * 8) + END],
        why="Go, GNU tar and Python read an all-NUL field as 0",
    )
    case(
        "all-nul-mtime",
        [entry(b"nul-mtime.txt", b"epoch", mtime=b"\0" * 12) + END],
    )
    case(
        "space-padded-octal",
        [entry(b"spaces.txt", b"  padded", mode=b" 640  \0 ", uid=b"   1000 ", gid=b"1000    ") + END],
    )
    case(
        "base256-size",
        [header(b"b256.txt", size=base256(10, 12)) + data(b"0123456789") + END],
    )
    case(
        "base256-uid",
        [entry(b"b256-uid.txt", b"big uid", uid=base256(5000000, 8), gid=base256(42, 8)) + END],
    )
    case(
        "bad-checksum",
        [entry(b"bad-sum.txt", b"x", checksum=1234) + END],
        expect="refuse",
        says="checksum",
    )
    case(
        "signed-checksum",
        [entry("caf\u00e9.txt".encode(), b"signed sum", signed_checksum=True) + END],
        why="old archivers summed signed bytes; Go accepts either sum",
    )
    case(
        "size-not-a-number",
        [header(b"nan.txt", size=b"12x4\0\0\0\0\0\0\0\0") + END],
        expect="refuse",
        says="malformed tar header",
    )
    case(
        "garbage-devmajor-on-a-file",
        [entry(b"devjunk.txt", b"x", fields={329: b"zz\0\0\0\0\0\0"}) + END],
        expect="refuse",
        says="malformed tar header",
        why="Go parses the device fields of every USTAR header",
    )
    # Trailing slashes, duplicates.
    case(
        "dir-trailing-slash-and-symlink-trailing-slash",
        [
            entry(b"tdir/", typeflag=b"5", mode=0o700)
            + header(b"slink/", typeflag=b"2", linkname=b"tdir", mode=0o777)
            + END
        ],
    )
    case(
        "duplicate-file-later-wins",
        [entry(b"dup.txt", b"first") + entry(b"dup.txt", b"second, longer") + END],
    )
    case(
        "file-then-dir-same-path",
        [entry(b"x", b"a file first") + entry(b"x/", typeflag=b"5", mode=0o755) + entry(b"x/in.txt", b"i") + END],
    )
    case(
        "dir-then-file-same-path",
        [
            entry(b"y/", typeflag=b"5", mode=0o755)
            + entry(b"y/in.txt", b"gone")
            + entry(b"y", b"a file replaces the tree")
            + END
        ],
    )
    case(
        "duplicate-dir-later-metadata",
        [entry(b"m/", typeflag=b"5", mode=0o755) + entry(b"m/", typeflag=b"5", mode=0o700, uid=5) + END],
    )
    # Typeflags Go returns but containerd does not unpack.
    case("contiguous-file", [entry(b"cont.txt", b"c", typeflag=b"7") + END], expect="refuse", says="containerd")
    case("unknown-typeflag", [entry(b"odd", b"", typeflag=b"Z") + END], expect="refuse", says="containerd")
    case(
        "gnu-sparse",
        [entry(b"sparse.bin", b"x", typeflag=b"S", magic=b"ustar ", version=b" \x00") + END],
        expect="refuse",
        says="GNU sparse",
    )
    case(
        "gnu-sparse-malformed-map",
        [
            entry(
                b"sparse2.bin",
                b"x",
                typeflag=b"S",
                magic=b"ustar ",
                version=b" \x00",
                fields={386: b"zzzzzzzzzzz\0", 483: b"notanumber\0\0"},
            )
            + END
        ],
        expect="refuse",
        says="GNU sparse",
    )
    case(
        "pax-sparse",
        [pax([(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0")]) + entry(b"ps.bin", b"x") + END],
        expect="refuse",
        says="PAX-format sparse file",
    )
    case(
        "symlink-with-size",
        [
            header(b"sized-link", typeflag=b"2", linkname=b"target", size=BLOCK, mode=0o777)
            + entry(b"after-link.txt", b"next header")
            + END
        ],
    )
    case(
        "root-directory-entry",
        [entry(b"./", typeflag=b"5", mode=0o755) + entry(b"./rooted.txt", b"under ./") + END],
        why="the root's own entry is rewritten as ./ and must read back as the root",
    )
    # Archive ends.
    case("no-end-marker", [entry(b"noend.txt", b"no zero blocks")])
    case("one-zero-block", [entry(b"onezero.txt", b"one zero block") + b"\0" * BLOCK])
    case(
        "zero-block-then-header",
        [entry(b"a.txt", b"a") + b"\0" * BLOCK + entry(b"b.txt", b"b") + END],
        expect="refuse",
        says="zero block",
    )
    # Names coldpress refuses on purpose (hostile rules).
    case("name-not-utf8", [entry(b"caf\xe9", b"latin-1") + END], expect="refuse", says="not valid UTF-8")
    case("absolute-path", [entry(b"/abs.txt", b"x") + END], expect="refuse", says="absolute path")
    # Hard links across whiteouts and overwrites (several layers).
    case(
        "hardlink-target-whited-out",
        [
            entry(b"orig.txt", b"shared bytes") + END,
            header(b"link.txt", typeflag=b"1", linkname=b"orig.txt") + END,
            entry(b".wh.orig.txt", b"") + END,
        ],
        why="the link keeps the content; its listing must not name the deleted path",
    )
    case(
        "hardlink-target-overwritten",
        [
            entry(b"t.txt", b"old bytes") + header(b"l.txt", typeflag=b"1", linkname=b"t.txt") + END,
            entry(b"t.txt", b"new bytes, another inode") + END,
        ],
    )
    case(
        "hardlink-long-names-gnu",
        [
            with_tarfile(
                tarfile.GNU_FORMAT,
                lambda t: (tf_add(t, LONG, b"long target"), tf_link(t, LONG + ".hard", LONG, tarfile.LNKTYPE)),
            )
        ],
    )
    case(
        "opaque-dir-and-whiteout",
        [
            entry(b"od/", typeflag=b"5", mode=0o755) + entry(b"od/old.txt", b"old") + entry(b"gone.txt", b"g") + END,
            entry(b"od/", typeflag=b"5", mode=0o755)
            + entry(b"od/.wh..wh..opq", b"")
            + entry(b"od/new.txt", b"new")
            + entry(b".wh.gone.txt", b"")
            + END,
        ],
    )


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    build_cases()
    manifest = []
    for c in CASES:
        files = []
        for i, layer in enumerate(c["layers"]):
            fn = "%s.%d.tar" % (c["name"], i)
            with open(os.path.join(out, fn), "wb") as f:
                f.write(layer)
            files.append(fn)
        m = {k: v for k, v in c.items() if k != "layers"}
        m["layers"] = files
        manifest.append(m)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("%d cases in %s" % (len(manifest), out))


if __name__ == "__main__":
    main()
