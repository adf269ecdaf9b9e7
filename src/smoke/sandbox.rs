//! Start a materialised image the way Lambda does, in a Lambda-like sandbox.
//!
//! coldpress re-executes itself as `coldpress sandbox-exec SPEC` (a hidden
//! command): a fresh, single-threaded process is the only kind that may create a
//! user namespace. That helper
//! 1. creates user, mount, PID, network, IPC and UTS namespaces. Its uid and gid
//!    become Lambda's runtime user (993/990) inside: capabilities in the new user
//!    namespace last until the runtime's `execve`, which drops them because the
//!    uid is not 0. Where user namespaces are refused and coldpress runs as root,
//!    it keeps the other namespaces and switches to 993/990 with setuid instead;
//! 2. brings up `lo`, the only interface of the new network namespace, binds the
//!    Runtime API's listening socket on 127.0.0.1 there and passes it to
//!    coldpress over a Unix socket (SCM_RIGHTS). coldpress serves the API on it
//!    from the host side; the function can reach nothing else;
//! 3. forks the namespace's init, which bind-mounts the root read-only, mounts a
//!    private tmpfs on /tmp, a fresh /proc and a minimal /dev (tmpfs with null,
//!    zero, full, random, urandom and tty bound from the host), pivots into it,
//!    detaches the host's tree, and starts ENTRYPOINT + CMD with the config's
//!    environment in WORKDIR. When the init dies, the kernel kills everything
//!    else in the PID namespace, so no process of the function outlives the run.
//!
//! Each link of the chain dies with its parent (PR_SET_PDEATHSIG), so a killed
//! coldpress leaves nothing behind either.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::materialise::{RUNTIME_GID, RUNTIME_UID};
use crate::error::{Error, IoContext, Result};

/// What the helper needs to know; written as JSON into the work directory.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Spec {
    pub rootfs: PathBuf,
    pub argv: Vec<String>,
    /// `KEY=VALUE`; `AWS_LAMBDA_RUNTIME_API` is added by the helper.
    pub env: Vec<String>,
    pub cwd: String,
    /// The helper's end of the Unix socket the listener is passed on.
    pub socket_fd: RawFd,
}

/// Which isolation the helper managed to set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// User, mount, PID, network, IPC and UTS namespaces; uid 993 inside.
    UserNamespace,
    /// Root without user namespaces: the other namespaces, then setuid 993.
    RootNamespaces,
}

impl Isolation {
    pub fn describe(self, proc_mounted: bool) -> String {
        let base = match self {
            Isolation::UserNamespace => {
                "user+mount+pid+net+ipc+uts namespaces, runtime uid 993/gid 990 (unprivileged)"
            }
            Isolation::RootNamespaces => {
                "mount+pid+net+ipc+uts namespaces as root (no user namespaces here), runtime uid 993/gid 990 via setuid"
            }
        };
        format!(
            "{base}; read-only root, private tmpfs /tmp, {} minimal /dev, loopback-only network",
            if proc_mounted {
                "fresh /proc,"
            } else {
                "no /proc (mounting it was refused),"
            }
        )
    }
}

/// A started sandbox: the helper process and the Runtime API socket it bound.
pub struct Sandbox {
    child: Child,
    pub listener: Option<TcpListener>,
    pub port: u16,
    pub isolation: Isolation,
    pub proc_mounted: bool,
    /// When the listener arrived: the runtime starts right after.
    pub ready: Instant,
}

/// Start `spec` (its `socket_fd` is filled in here). The helper's stdout and
/// stderr, and the function's, go to `log`.
pub fn start(
    spec: &Spec,
    spec_path: &Path,
    log: &File,
    ready_timeout: Duration,
) -> Result<Sandbox> {
    let exe = std::env::current_exe().ctx("finding the coldpress executable for the sandbox")?;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills the two ints it is given.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(Error::io(
            "smoke: creating the sandbox's socket",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: both were just created and are owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut spec = spec.clone();
    spec.socket_fd = theirs.as_raw_fd();
    std::fs::write(
        spec_path,
        serde_json::to_vec(&spec).expect("specs serialize"),
    )
    .with_ctx(|| format!("writing {}", spec_path.display()))?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("sandbox-exec")
        .arg(spec_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().ctx("smoke: sharing the log")?)
        .stderr(log.try_clone().ctx("smoke: sharing the log")?);
    // SAFETY: only async-signal-safe calls (prctl, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().ctx("smoke: starting the sandbox helper")?;
    drop(theirs);
    let received = recv_listener(&ours, ready_timeout);
    let (fd, data) = match received {
        Ok(v) => v,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::io("smoke: the sandbox did not start", e));
        }
    };
    // SAFETY: the fd arrived by SCM_RIGHTS and is ours alone.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(Sandbox {
        child,
        listener: Some(listener),
        port: u16::from_le_bytes([data[0], data[1]]),
        isolation: if data[2] == 1 {
            Isolation::UserNamespace
        } else {
            Isolation::RootNamespaces
        },
        proc_mounted: data[3] == 1,
        ready: Instant::now(),
    })
}

impl Sandbox {
    /// The exit status, if the function's sandbox has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// End the sandbox and every process in it, and wait until they are gone.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SIGTERM asks the helper to kill the namespace's init and reap it, which
        // returns only once the kernel has killed the rest of the namespace.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn recv_listener(sock: &OwnedFd, timeout: Duration) -> io::Result<(RawFd, [u8; 4])> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a valid timeval.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let mut data = [0u8; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = [0u8; 64];
    // SAFETY: msghdr points at live buffers for the duration of the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = cbuf.len() as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n as usize == data.len()
            && !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
            return Ok((fd, data));
        }
        n
    };
    Err(io::Error::other(if n == 0 {
        "it exited before handing over the Runtime API socket (see its output)".to_string()
    } else {
        format!("unexpected message of {n} bytes")
    }))
}

fn send_listener(sock: RawFd, fd: RawFd, data: [u8; 4]) -> io::Result<()> {
    let mut data = data;
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a correctly sized control buffer for one fd.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the helper

static INIT_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_term(_: libc::c_int) {
    let pid = INIT_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("paths have no NUL")
}

fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(|s| CString::new(s).expect("no NUL"));
    let fstype = fstype.map(|s| CString::new(s).expect("no NUL"));
    let data = data.map(|s| CString::new(s).expect("no NUL"));
    let t = cstr(target);
    // SAFETY: all pointers are NUL-terminated strings or null.
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            t.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    if rc != 0 {
        return Err(os_err(&format!("mounting {}", target.display())));
    }
    Ok(())
}

/// `coldpress sandbox-exec SPEC`: never returns; exits with the function's status.
pub fn helper_main(spec_path: &Path) -> ! {
    match helper(spec_path) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("coldpress sandbox: {e}");
            std::process::exit(125);
        }
    }
}

fn write_proc(path: &str, text: &str) -> io::Result<()> {
    std::fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))
}

fn helper(spec_path: &Path) -> io::Result<i32> {
    let spec: Spec =
        serde_json::from_slice(&std::fs::read(spec_path)?).map_err(io::Error::other)?;
    // SAFETY: plain syscalls on a single-threaded process.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let others = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare on a single-threaded process.
    let isolation = if unsafe { libc::unshare(libc::CLONE_NEWUSER | others) } == 0 {
        write_proc("/proc/self/setgroups", "deny")?;
        write_proc("/proc/self/uid_map", &format!("{RUNTIME_UID} {uid} 1\n"))?;
        write_proc("/proc/self/gid_map", &format!("{RUNTIME_GID} {gid} 1\n"))?;
        Isolation::UserNamespace
    } else if uid == 0 && unsafe { libc::unshare(others) } == 0 {
        Isolation::RootNamespaces
    } else {
        return Err(os_err(
            "cannot create namespaces for the sandbox (user namespaces are refused and coldpress is not root)",
        ));
    };
    bring_up_loopback()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();

    let mut env = spec.env.clone();
    env.push(format!("AWS_LAMBDA_RUNTIME_API=127.0.0.1:{port}"));

    // SAFETY: fork on a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_err("fork"));
    }
    if pid == 0 {
        // The namespace's init.
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let code = match init(&spec, env, isolation, spec.socket_fd, listener, port) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("coldpress sandbox: {e}");
                125
            }
        };
        std::process::exit(code);
    }
    INIT_PID.store(pid, Ordering::SeqCst);
    drop(listener);
    // SAFETY: installing an async-signal-safe handler.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::close(spec.socket_fd);
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(os_err("waiting for the sandbox's init"));
        }
    }
    Ok(exit_code(status))
}

fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}

fn bring_up_loopback() -> io::Result<()> {
    // SAFETY: an ifreq for "lo", read and written by ioctl.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(os_err("socket for lo"));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            libc::close(s);
            return Err(os_err("reading lo's flags"));
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        libc::close(s);
        if rc < 0 {
            return Err(os_err("bringing lo up"));
        }
    }
    Ok(())
}

fn init(
    spec: &Spec,
    env: Vec<String>,
    isolation: Isolation,
    sock: RawFd,
    listener: TcpListener,
    port: u16,
) -> io::Result<i32> {
    let root = &spec.rootfs;
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        Some(&root.to_string_lossy()),
        root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    mount(
        Some("tmpfs"),
        &root.join("tmp"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777,size=536870912"),
    )?;
    let proc_mounted = mount(
        Some("proc"),
        &root.join("proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .is_ok();
    let dev = root.join("dev");
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=755,size=65536"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        File::create(&target)?;
        let host = format!("/dev/{node}");
        if Path::new(&host).exists() {
            mount(Some(&host), &target, None, libc::MS_BIND, None)?;
        }
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))?;
    }
    std::fs::create_dir(dev.join("shm"))?;
    // Read-only root. A remount in a user namespace must keep the flags the
    // source mount has locked (nosuid, nodev, noexec, atime).
    // SAFETY: statvfs fills the struct.
    let locked = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        let c = cstr(root);
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(os_err("statvfs of the root"));
        }
        let mut f = 0;
        for (st_flag, ms_flag) in [
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if st.f_flag & st_flag != 0 {
                f |= ms_flag;
            }
        }
        f
    };
    mount(
        None,
        root,
        None,
        libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | locked,
        None,
    )?;
    // Into the new root; the host's tree is detached and unreachable.
    std::env::set_current_dir(root)?;
    let dot = CString::new(".").expect("no NUL");
    // SAFETY: pivot_root and umount2 with valid strings.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(os_err("pivot_root"));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(os_err("detaching the host's tree"));
        }
    }
    std::env::set_current_dir("/")?;

    // Tell coldpress where the Runtime API is, then start the function.
    let [p0, p1] = port.to_le_bytes();
    send_listener(
        sock,
        listener.as_raw_fd(),
        [
            p0,
            p1,
            (isolation == Isolation::UserNamespace) as u8,
            proc_mounted as u8,
        ],
    )?;
    drop(listener);
    // SAFETY: closing our copy of the socket.
    unsafe { libc::close(sock) };

    let Some((program, args)) = spec.argv.split_first() else {
        return Err(io::Error::other("the image has neither ENTRYPOINT nor CMD"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().stdin(Stdio::null());
    for kv in &env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if std::env::set_current_dir(&spec.cwd).is_err() {
        let _ = writeln!(
            io::stderr(),
            "coldpress sandbox: WORKDIR {} does not exist in the image",
            spec.cwd
        );
        return Ok(126);
    }
    if isolation == Isolation::RootNamespaces {
        cmd.uid(RUNTIME_UID as u32).gid(RUNTIME_GID as u32);
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "coldpress sandbox: cannot start {program}: {e}"
            );
            return Ok(if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let runtime = child.id() as i32;
    // As the namespace's init: reap everything, end with the runtime.
    loop {
        let mut status = 0;
        // SAFETY: waitpid for any child.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == runtime {
            return Ok(exit_code(status));
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(os_err("waiting for the runtime"));
        }
    }
}
