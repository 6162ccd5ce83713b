//! Who may hold a connection: the counts behind `mqtt.max_pending_connections`,
//! `mqtt.max_connections_per_ip` and `mqtt.max_connections`.
//!
//! A TCP connection takes a *pending* slot and a slot of its source address at accept. At
//! CONNECT it gives the pending slot back; a configured device's session also gives its
//! address slot back and needs nothing else (one session per device id, so the devices of
//! the estate always have room), while any other client id takes a *stranger* slot. So a
//! flood of sockets that never CONNECT, or of made-up client ids, can fill only the pending
//! and stranger pools and one address's share, never the devices' room.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::metrics::MqttRefusal;

#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub pending: usize,
    pub per_ip: usize,
    pub strangers: usize,
}

#[derive(Debug, Default)]
struct Counts {
    pending: usize,
    strangers: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug, Clone)]
pub struct Admission {
    caps: Caps,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Pending,
    Stranger,
    Device,
}

/// One connection's slots; given back on drop, however the connection ends.
#[derive(Debug)]
pub struct Ticket {
    admission: Admission,
    ip: IpAddr,
    held: Held,
}

impl Admission {
    pub fn new(caps: Caps) -> Self {
        Self {
            caps,
            counts: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent through a panic elsewhere (each update is whole).
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At TCP accept.
    pub fn accept(&self, ip: IpAddr) -> Result<Ticket, MqttRefusal> {
        let mut c = self.lock();
        if c.pending >= self.caps.pending {
            return Err(MqttRefusal::PendingCap);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.caps.per_ip {
            return Err(MqttRefusal::PerIpCap);
        }
        *n += 1;
        c.pending += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip,
            held: Held::Pending,
        })
    }

    fn release_ip(c: &mut Counts, ip: IpAddr) {
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
    }
}

impl Ticket {
    /// At CONNECT: `device` when the client id is a configured MQTT device.
    pub fn connected(&mut self, device: bool) -> Result<(), MqttRefusal> {
        if self.held != Held::Pending {
            return Ok(());
        }
        let admission = self.admission.clone();
        let mut c = admission.lock();
        if device {
            c.pending -= 1;
            Admission::release_ip(&mut c, self.ip);
            self.held = Held::Device;
            return Ok(());
        }
        if c.strangers >= admission.caps.strangers {
            return Err(MqttRefusal::ConnectionCap);
        }
        c.pending -= 1;
        c.strangers += 1;
        self.held = Held::Stranger;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.admission.lock();
        match self.held {
            Held::Pending => {
                c.pending = c.pending.saturating_sub(1);
                Admission::release_ip(&mut c, self.ip);
            }
            Held::Stranger => {
                c.strangers = c.strangers.saturating_sub(1);
                Admission::release_ip(&mut c, self.ip);
            }
            Held::Device => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_and_silent_sockets_cannot_take_the_devices_room() {
        let a = Admission::new(Caps {
            pending: 3,
            per_ip: 2,
            strangers: 1,
        });
        let flood: IpAddr = "10.0.0.9".parse().expect("ip");
        let device: IpAddr = "10.0.0.2".parse().expect("ip");
        let s1 = a.accept(flood).expect("first");
        let _s2 = a.accept(flood).expect("second");
        assert_eq!(a.accept(flood).err(), Some(MqttRefusal::PerIpCap));
        // The device's address still gets a pending slot, and its session frees it.
        let mut d = a.accept(device).expect("device accept");
        assert_eq!(a.accept(device).err(), Some(MqttRefusal::PendingCap));
        d.connected(true).expect("a configured device always has room");
        let mut s3 = a.accept(device).expect("pending slot given back");
        s3.connected(false).expect("one stranger");
        let mut s1 = s1;
        assert_eq!(s1.connected(false).err(), Some(MqttRefusal::ConnectionCap));
        drop(s3);
        s1.connected(false).expect("a stranger slot came back");
        drop((s1, d));
        assert_eq!(a.lock().pending, 1);
        assert_eq!(a.lock().strangers, 0);
    }
}
