//! The upgrade socket's wire: one unix `SOCK_SEQPACKET` connection between
//! the running balancer and its successor. Every message is one packet of a
//! few bytes; each listening socket travels in a packet of its own, with its
//! descriptor attached (`SCM_RIGHTS`) and a fixed-size description.
//! Everything read here is checked: packet sizes, counts, descriptors.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::UpgradeError;

/// The successor's first packet.
pub(crate) const HELLO: &[u8] = b"wslb-upgrade/1 hello";
/// The successor accepts on every socket it took: the old process drains.
pub(crate) const READY: &[u8] = b"wslb-upgrade/1 ready";
/// The old process's answer to [`READY`]: it stopped accepting.
pub(crate) const DRAINING: &[u8] = b"wslb-upgrade/1 draining";
/// The count of sockets to follow (then a 4-byte big-endian count).
const SOCKETS: &[u8] = b"wslb-upgrade/1 sockets ";
/// Most sockets one hand-over carries (workers times addresses).
pub(crate) const MAX_SOCKETS: usize = 4096;
/// No packet of this protocol is longer.
const MAX_PACKET: usize = 64;
/// Bytes of one socket's description.
const RECORD_LEN: usize = 24;

/// What a listening socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Plain HTTP/WebSocket (`--listen`).
    Plain,
    /// TLS (`--tls-listen`).
    Tls,
    /// The backends' control channel (`--control-listen`).
    Control,
    /// The admin API (`--admin-listen`).
    Admin,
}

impl Role {
    fn code(self) -> u8 {
        match self {
            Role::Plain => 1,
            Role::Tls => 2,
            Role::Control => 3,
            Role::Admin => 4,
        }
    }

    fn from_code(code: u8) -> Option<Role> {
        Some(match code {
            1 => Role::Plain,
            2 => Role::Tls,
            3 => Role::Control,
            4 => Role::Admin,
            _ => return None,
        })
    }
}

/// A listening socket's description: what it serves, which worker of the
/// old process accepted on it, and its bound address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Description {
    pub role: Role,
    pub worker: u32,
    pub addr: SocketAddr,
}

impl Description {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0] = self.role.code();
        out[1..5].copy_from_slice(&self.worker.to_be_bytes());
        match self.addr.ip() {
            IpAddr::V4(ip) => {
                out[5] = 4;
                out[6..10].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out[5] = 6;
                out[6..22].copy_from_slice(&ip.octets());
            }
        }
        out[22..24].copy_from_slice(&self.addr.port().to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Description, UpgradeError> {
        let bad = |what: &str| UpgradeError::Protocol(format!("socket description: {what}"));
        if bytes.len() != RECORD_LEN {
            return Err(bad("wrong length"));
        }
        let role = Role::from_code(bytes[0]).ok_or_else(|| bad("unknown kind"))?;
        let worker = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let mut v6 = [0u8; 16];
        v6.copy_from_slice(&bytes[6..22]);
        let ip = match bytes[5] {
            4 => IpAddr::V4(Ipv4Addr::new(v6[0], v6[1], v6[2], v6[3])),
            6 => IpAddr::V6(Ipv6Addr::from(v6)),
            _ => return Err(bad("unknown address family")),
        };
        let port = u16::from_be_bytes([bytes[22], bytes[23]]);
        Ok(Description {
            role,
            worker,
            addr: SocketAddr::new(ip, port),
        })
    }
}

/// Sends one packet, with `fd` attached when given.
pub(crate) fn send(sock: &OwnedFd, data: &[u8], fd: Option<&OwnedFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives the
    // sendmsg call, and the control buffer (64 bytes) holds one cmsghdr with
    // one descriptor (CMSG_SPACE(4) is at most 24 bytes).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            let space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
            let raw: libc::c_int = fd.as_raw_fd();
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), raw);
        }
        let sent = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != data.len() {
            return Err(io::Error::other("short send on a packet socket"));
        }
    }
    Ok(())
}

/// Receives one packet: its bytes and every descriptor attached to it (each
/// owned, so that any the caller does not want is closed). An empty packet
/// with no descriptor is the peer's end.
pub(crate) fn recv(sock: &OwnedFd) -> Result<(Vec<u8>, Vec<OwnedFd>), UpgradeError> {
    let mut buf = [0u8; MAX_PACKET];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    let mut fds = Vec::new();
    // SAFETY: the pointers in msg point into buf and control, which outlive
    // the call; the kernel writes at most msg_controllen bytes of control
    // data, which the CMSG_* walk below stays within; each descriptor read
    // from an SCM_RIGHTS message is a new one the kernel installed for us,
    // owned from here on (MSG_CMSG_CLOEXEC keeps it from leaking to children).
    let (n, flags) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(UpgradeError::io("receive", io::Error::last_os_error()));
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = data.offset_from(cmsg.cast::<u8>()) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        (n as usize, msg.msg_flags)
    };
    if flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(UpgradeError::Protocol("oversized packet".into()));
    }
    Ok((buf[..n].to_vec(), fds))
}

/// Receives one packet that must be exactly `expected`, with no descriptor.
pub(crate) fn expect(sock: &OwnedFd, expected: &[u8]) -> Result<(), UpgradeError> {
    let (data, fds) = recv(sock)?;
    if data.is_empty() && fds.is_empty() {
        return Err(UpgradeError::Protocol("the peer hung up".into()));
    }
    if data != expected || !fds.is_empty() {
        return Err(UpgradeError::Protocol(format!(
            "expected {:?}, got {} bytes and {} descriptors",
            String::from_utf8_lossy(expected),
            data.len(),
            fds.len()
        )));
    }
    Ok(())
}

/// Sends the count, then each socket with its description.
pub(crate) fn send_sockets(
    sock: &OwnedFd,
    sockets: &[(Description, OwnedFd)],
) -> Result<(), UpgradeError> {
    if sockets.len() > MAX_SOCKETS {
        return Err(UpgradeError::Protocol(format!(
            "{} listening sockets, more than {MAX_SOCKETS}",
            sockets.len()
        )));
    }
    let mut head = SOCKETS.to_vec();
    head.extend_from_slice(&(sockets.len() as u32).to_be_bytes());
    send(sock, &head, None).map_err(|e| UpgradeError::io("send", e))?;
    for (desc, fd) in sockets {
        send(sock, &desc.encode(), Some(fd)).map_err(|e| UpgradeError::io("send", e))?;
    }
    Ok(())
}

/// Receives the count and that many sockets, each with exactly one
/// descriptor and a valid description.
pub(crate) fn recv_sockets(sock: &OwnedFd) -> Result<Vec<(Description, OwnedFd)>, UpgradeError> {
    let (head, fds) = recv(sock)?;
    let count = match head.strip_prefix(SOCKETS) {
        Some(&[a, b, c, d]) if fds.is_empty() => u32::from_be_bytes([a, b, c, d]) as usize,
        _ => {
            return Err(UpgradeError::Protocol(
                "expected the count of sockets".into(),
            ))
        }
    };
    if count > MAX_SOCKETS {
        return Err(UpgradeError::Protocol(format!(
            "{count} sockets announced, more than {MAX_SOCKETS}"
        )));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (data, mut fds) = recv(sock)?;
        let desc = Description::decode(&data)?;
        if fds.len() != 1 {
            return Err(UpgradeError::Protocol(format!(
                "{} descriptors with one socket description",
                fds.len()
            )));
        }
        if let Some(fd) = fds.pop() {
            out.push((desc, fd));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
            .expect("socketpair");
        (a.into(), b.into())
    }

    #[test]
    fn descriptions_round_trip_and_bad_ones_are_refused() {
        for addr in ["127.0.0.1:8080", "[::1]:443", "0.0.0.0:0"] {
            let d = Description {
                role: Role::Tls,
                worker: 7,
                addr: addr.parse().unwrap(),
            };
            assert_eq!(Description::decode(&d.encode()).unwrap(), d);
        }
        let mut bad = Description {
            role: Role::Admin,
            worker: 0,
            addr: "127.0.0.1:1".parse().unwrap(),
        }
        .encode();
        bad[0] = 9;
        assert!(Description::decode(&bad).is_err());
        bad[0] = 1;
        bad[5] = 5;
        assert!(Description::decode(&bad).is_err());
        assert!(Description::decode(&bad[..10]).is_err());
    }

    #[test]
    fn sockets_travel_with_their_descriptions() {
        let (a, b) = pair();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let d = Description {
            role: Role::Plain,
            worker: 1,
            addr,
        };
        send_sockets(&a, &[(d, OwnedFd::from(l))]).unwrap();
        let got = recv_sockets(&b).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, d);
        let l2 = std::net::TcpListener::from(got.into_iter().next().unwrap().1);
        assert_eq!(l2.local_addr().unwrap(), addr);
    }

    #[test]
    fn a_lying_count_or_a_missing_descriptor_is_refused() {
        let (a, b) = pair();
        let mut head = SOCKETS.to_vec();
        head.extend_from_slice(&(MAX_SOCKETS as u32 + 1).to_be_bytes());
        send(&a, &head, None).unwrap();
        assert!(recv_sockets(&b).is_err());
        let mut head = SOCKETS.to_vec();
        head.extend_from_slice(&1u32.to_be_bytes());
        send(&a, &head, None).unwrap();
        let d = Description {
            role: Role::Plain,
            worker: 0,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        send(&a, &d.encode(), None).unwrap();
        assert!(recv_sockets(&b).is_err());
        send(&a, b"garbage", None).unwrap();
        assert!(expect(&b, READY).is_err());
        drop(a);
        assert!(expect(&b, READY).is_err());
    }
}
