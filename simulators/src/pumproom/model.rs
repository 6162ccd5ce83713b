//! The pump room's physics, pure and stepped by the caller (a background task in the
//! simulator, a plain loop in tests): a duty pump, a standby pump that takes over after
//! `standby_delay` when the duty pump is lost, the outlet pressure they make and the tank
//! they draw from.

use std::time::Duration;

/// Outlet pressure with a pump running (MPa).
pub const PRESSURE_RUNNING: f64 = 0.45;
/// Pressure the outlet decays to with no pump running (MPa): the static head.
pub const PRESSURE_IDLE: f64 = 0.05;
/// Time constant of the pressure's approach to its target. With 0.8 s, losing every pump
/// takes the outlet from 0.45 below 0.25 MPa in about 0.55 s, and a started pump brings it
/// above 0.3 MPa in about 0.8 s.
const PRESSURE_TAU_S: f64 = 0.8;
/// Half-width of the pressure noise (MPa): below the gateway's 0.005 deadband on purpose.
const PRESSURE_NOISE: f64 = 0.002;
/// Motor current of a running pump (A) and its noise.
const PUMP_CURRENT_A: f64 = 12.0;
const CURRENT_NOISE_A: f64 = 0.1;
/// Tank: inflow always; a running pump draws more than flows in.
const INFLOW_M_PER_S: f64 = 0.003;
const DRAW_M_PER_S: f64 = 0.005;
const LEVEL_MIN_M: f64 = 0.1;
const LEVEL_MAX_M: f64 = 4.0;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pump {
    pub running: bool,
    /// Set by a trip; stays until reset.
    pub fault: bool,
    pub current_a: f64,
}

#[derive(Debug, Clone)]
pub struct Model {
    /// True outlet pressure (MPa), without noise.
    pub pressure: f64,
    /// Pressure as the sensor reads it: the true value plus noise.
    pub pressure_sensed: f64,
    pub level_m: f64,
    /// Pump 1 is the duty pump, pump 2 the standby.
    pub pumps: [Pump; 2],
    /// Coil 0: the operator's enable for the duty pump.
    pub pump1_enabled: bool,
    /// The sensor's frozen register value while it is stuck.
    pub stuck_pressure: Option<u16>,
    standby_delay: Duration,
    /// How long the duty pump has been unavailable.
    duty_lost_for: Duration,
    rng: fastrand::Rng,
}

impl Model {
    /// A pump room in steady state: duty pump running, tank half full.
    pub fn new(standby_delay: Duration, seed: u64) -> Self {
        let mut model = Self {
            pressure: PRESSURE_RUNNING,
            pressure_sensed: PRESSURE_RUNNING,
            level_m: 2.5,
            pumps: [Pump::default(); 2],
            pump1_enabled: true,
            stuck_pressure: None,
            standby_delay,
            duty_lost_for: Duration::ZERO,
            rng: fastrand::Rng::with_seed(seed),
        };
        model.step(Duration::ZERO);
        model
    }

    pub fn step(&mut self, dt: Duration) {
        let duty_available = self.pump1_enabled && !self.pumps[0].fault;
        if duty_available {
            self.duty_lost_for = Duration::ZERO;
            self.pumps[0].running = true;
            // The duty pump is back: the standby returns to standby.
            self.pumps[1].running = false;
        } else {
            self.pumps[0].running = false;
            self.duty_lost_for = self.duty_lost_for.saturating_add(dt);
            if self.duty_lost_for >= self.standby_delay && !self.pumps[1].fault {
                self.pumps[1].running = true;
            }
        }
        if self.pumps[1].fault {
            self.pumps[1].running = false;
        }

        let any_running = self.pumps.iter().any(|p| p.running);
        let target = if any_running { PRESSURE_RUNNING } else { PRESSURE_IDLE };
        let alpha = 1.0 - (-dt.as_secs_f64() / PRESSURE_TAU_S).exp();
        self.pressure += (target - self.pressure) * alpha;
        self.pressure_sensed = (self.pressure + self.noise(PRESSURE_NOISE)).max(0.0);

        for i in 0..self.pumps.len() {
            let current = if self.pumps[i].running {
                PUMP_CURRENT_A + self.noise(CURRENT_NOISE_A)
            } else {
                0.0
            };
            self.pumps[i].current_a = current;
        }

        let draw = if any_running { DRAW_M_PER_S } else { 0.0 };
        self.level_m = (self.level_m + (INFLOW_M_PER_S - draw) * dt.as_secs_f64()).clamp(LEVEL_MIN_M, LEVEL_MAX_M);
    }

    /// Trips pump 1 or 2 (others are ignored): it stops at once and its fault latches.
    pub fn trip(&mut self, pump: u8) -> bool {
        let Some(p) = usize::from(pump).checked_sub(1).and_then(|i| self.pumps.get_mut(i)) else {
            return false;
        };
        p.fault = true;
        p.running = false;
        p.current_a = 0.0;
        true
    }

    /// Clears both faults; the duty pump restarts at the next step if enabled.
    pub fn reset(&mut self) {
        for p in &mut self.pumps {
            p.fault = false;
        }
    }

    pub fn set_stuck(&mut self, stuck: bool) {
        self.stuck_pressure = stuck.then(|| self.pressure_register());
    }

    fn noise(&mut self, half_width: f64) -> f64 {
        (self.rng.f64() * 2.0 - 1.0) * half_width
    }

    fn pressure_register(&self) -> u16 {
        to_u16(self.pressure_sensed * 1000.0)
    }

    /// Holding registers 0–6 (see the register map in the module above).
    pub fn holding(&self) -> [u16; 7] {
        let [p1, p2] = current_words(&self.pumps);
        let status = u16::from(self.pumps[0].running)
            | u16::from(self.pumps[1].running) << 1
            | u16::from(self.pumps[0].fault) << 2
            | u16::from(self.pumps[1].fault) << 3;
        [
            self.stuck_pressure.unwrap_or_else(|| self.pressure_register()),
            to_u16(self.level_m * 100.0),
            p1[0],
            p1[1],
            p2[0],
            p2[1],
            status,
        ]
    }

    /// Discrete inputs 0–3.
    pub fn discrete(&self) -> [bool; 4] {
        [
            self.pumps[0].fault,
            self.pumps[1].fault,
            self.pumps[0].running,
            self.pumps[1].running,
        ]
    }

    /// Coils 0–1; `fault_reset` always reads false (it is a push button).
    pub fn coils(&self) -> [bool; 2] {
        [self.pump1_enabled, false]
    }
}

fn to_u16(v: f64) -> u16 {
    // `as` saturates and maps NaN to 0: no panic whatever the model does.
    v.round() as u16
}

/// Each pump's current as an f32, most significant word first, big-endian bytes.
fn current_words(pumps: &[Pump; 2]) -> [[u16; 2]; 2] {
    pumps.map(|p| {
        let bits = (p.current_a as f32).to_bits();
        [(bits >> 16) as u16, bits as u16]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    fn run(model: &mut Model, seconds: f64) {
        for _ in 0..(seconds * 10.0).round() as u32 {
            model.step(TICK);
        }
    }

    #[test]
    fn steady_state_has_the_duty_pump_running_at_pressure() {
        let mut m = Model::new(Duration::from_secs(8), 1);
        run(&mut m, 5.0);
        assert!(m.pumps[0].running && !m.pumps[1].running);
        assert!((m.pressure - PRESSURE_RUNNING).abs() < 0.01);
        assert!((m.holding()[0] as f64 / 1000.0 - 0.45).abs() <= 0.003);
        assert_eq!(m.holding()[6], 0b0001);
        let current = f32::from_bits(u32::from(m.holding()[2]) << 16 | u32::from(m.holding()[3]));
        assert!((current - 12.0).abs() < 0.2, "{current}");
    }

    #[test]
    fn duty_trip_drops_pressure_then_standby_recovers_and_the_fault_latches() {
        let mut m = Model::new(Duration::from_secs(8), 2);
        run(&mut m, 3.0);
        assert!(m.trip(1));
        run(&mut m, 2.0);
        assert!(m.pressure < 0.25, "pressure {} two seconds after the trip", m.pressure);
        assert_eq!(m.discrete(), [true, false, false, false]);
        run(&mut m, 5.5);
        assert!(!m.pumps[1].running, "standby waits for its delay");
        run(&mut m, 0.6);
        assert!(m.pumps[1].running, "standby starts after 8 s");
        run(&mut m, 2.0);
        assert!(m.pressure > 0.3, "pressure {} recovers on the standby", m.pressure);
        assert!(m.pumps[0].fault, "the tripped pump's fault stays until reset");
        assert_eq!(m.holding()[6], 0b0110);
    }

    #[test]
    fn reset_clears_faults_and_the_duty_pump_takes_over_again() {
        let mut m = Model::new(Duration::from_secs(1), 3);
        m.trip(1);
        run(&mut m, 3.0);
        assert!(m.pumps[1].running);
        m.reset();
        run(&mut m, 0.2);
        assert_eq!(m.discrete(), [false, false, true, false]);
        assert_eq!(m.holding()[6], 0b0001);
    }

    #[test]
    fn both_pumps_tripped_leaves_the_static_head() {
        let mut m = Model::new(Duration::from_secs(1), 4);
        m.trip(1);
        m.trip(2);
        assert!(!m.trip(3), "there is no pump 3");
        run(&mut m, 10.0);
        assert!((m.pressure - PRESSURE_IDLE).abs() < 0.01);
        assert_eq!(m.pumps[1].current_a, 0.0);
    }

    #[test]
    fn a_stuck_sensor_freezes_the_register_not_the_model() {
        let mut m = Model::new(Duration::from_secs(8), 5);
        m.set_stuck(true);
        let frozen = m.holding()[0];
        m.trip(1);
        run(&mut m, 3.0);
        assert_eq!(m.holding()[0], frozen);
        assert!(m.pressure < 0.25);
        m.set_stuck(false);
        assert!(m.holding()[0] < 250);
    }
}
