//! The watermark valve: how the watermarks of several input channels become one watermark.
//!
//! This is Flink's `StatusWatermarkValve` (docs/semantics.md A2.3, A2.4), enforced at every operator input:
//!
//! * each channel's watermark only moves forward: a watermark `<=` the channel's last one is dropped
//!   and counted ([`WatermarkValve::dropped`]);
//! * the output is the minimum over the channels that are active and *aligned*, and it is emitted
//!   only when it **strictly increases**;
//! * an idle channel leaves the minimum (if it held it, a new minimum is emitted at once); when every
//!   channel is idle the valve first flushes the largest channel watermark, then reports
//!   [`ValveOutput::idle`];
//! * a channel that becomes active again rejoins the minimum only once its watermark is `>=` the
//!   last emitted watermark, so a stale channel never holds progress back.
//!
//! A single-channel valve is what a one-input operator uses: it only enforces strict increase.

use crate::time::{MIN_WATERMARK, Timestamp};

/// What the valve emits in response to one input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValveOutput {
    /// A new combined watermark, strictly larger than every one emitted before.
    pub watermark: Option<Timestamp>,
    /// Every channel has become idle (emitted after `watermark`, if both are set).
    pub idle: bool,
    /// The valve was all-idle and a channel became active again.
    pub active: bool,
}

#[derive(Debug, Clone, Copy)]
struct Channel {
    watermark: Timestamp,
    idle: bool,
    aligned: bool,
}

/// Combines the watermarks of `n` input channels into one strictly increasing watermark.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    channels: Vec<Channel>,
    last_output: Timestamp,
    all_idle: bool,
    dropped: u64,
}

impl WatermarkValve {
    /// A valve over `channels` input channels (at least one), all active, all at `MIN`.
    pub fn new(channels: usize) -> Self {
        let channels = channels.max(1);
        WatermarkValve {
            channels: vec![
                Channel { watermark: MIN_WATERMARK, idle: false, aligned: true };
                channels
            ],
            last_output: MIN_WATERMARK,
            all_idle: false,
            dropped: 0,
        }
    }

    /// The last watermark emitted (`MIN` before any).
    pub fn current(&self) -> Timestamp {
        self.last_output
    }

    /// How many watermarks were dropped because they did not advance their channel.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// True when every channel is idle.
    pub fn is_idle(&self) -> bool {
        self.all_idle
    }

    /// A watermark arrived on `channel` (which also makes an idle channel active again).
    ///
    /// Channel indices out of range are ignored and counted as dropped rather than panicking.
    pub fn on_watermark(&mut self, channel: usize, watermark: Timestamp) -> ValveOutput {
        let mut out = ValveOutput::default();
        if channel >= self.channels.len() {
            self.dropped += 1;
            return out;
        }
        if self.channels[channel].idle {
            out.active = self.on_active(channel).active;
        }
        let last_output = self.last_output;
        let ch = &mut self.channels[channel];
        if watermark <= ch.watermark {
            self.dropped += 1;
            return out;
        }
        ch.watermark = watermark;
        if !ch.aligned && watermark >= last_output {
            ch.aligned = true;
        }
        out.watermark = self.new_minimum();
        out
    }

    /// A record arrived on `channel`: an idle channel becomes active (Flink sources announce this
    /// with an ACTIVE status before the record).
    #[inline]
    pub fn on_record(&mut self, channel: usize) -> ValveOutput {
        match self.channels.get(channel) {
            Some(ch) if ch.idle => self.on_active(channel),
            _ => ValveOutput::default(),
        }
    }

    /// `channel` declared itself idle.
    pub fn on_idle(&mut self, channel: usize) -> ValveOutput {
        let mut out = ValveOutput::default();
        let Some(ch) = self.channels.get_mut(channel) else { return out };
        if ch.idle {
            return out;
        }
        ch.idle = true;
        ch.aligned = false;
        let held_minimum = ch.watermark == self.last_output;
        if self.channels.iter().all(|c| c.idle) {
            if held_minimum {
                let max = self.channels.iter().map(|c| c.watermark).max().unwrap_or(MIN_WATERMARK);
                if max > self.last_output {
                    self.last_output = max;
                    out.watermark = Some(max);
                }
            }
            self.all_idle = true;
            out.idle = true;
        } else if held_minimum {
            out.watermark = self.new_minimum();
        }
        out
    }

    fn on_active(&mut self, channel: usize) -> ValveOutput {
        let last_output = self.last_output;
        let ch = &mut self.channels[channel];
        ch.idle = false;
        if ch.watermark >= last_output {
            ch.aligned = true;
        }
        let was_idle = std::mem::replace(&mut self.all_idle, false);
        ValveOutput { active: was_idle, ..ValveOutput::default() }
    }

    fn new_minimum(&mut self) -> Option<Timestamp> {
        let min =
            self.channels.iter().filter(|c| !c.idle && c.aligned).map(|c| c.watermark).min()?;
        if min > self.last_output {
            self.last_output = min;
            Some(min)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(o: ValveOutput) -> Option<Timestamp> {
        o.watermark
    }

    #[test]
    fn single_channel_is_strictly_increasing() {
        // docs/semantics.md A2.3: W10, W10, W5, W11 gives WM(10), then WM(11).
        let mut v = WatermarkValve::new(1);
        assert_eq!(wm(v.on_watermark(0, 10)), Some(10));
        assert_eq!(wm(v.on_watermark(0, 10)), None);
        assert_eq!(wm(v.on_watermark(0, 5)), None);
        assert_eq!(wm(v.on_watermark(0, 11)), Some(11));
        assert_eq!(v.dropped(), 2);
    }

    #[test]
    fn minimum_over_channels_waits_for_every_channel() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(wm(v.on_watermark(0, 10)), None);
        assert_eq!(wm(v.on_watermark(1, 6)), Some(6));
        assert_eq!(wm(v.on_watermark(1, 20)), Some(10));
        assert_eq!(wm(v.on_watermark(0, 15)), Some(15));
        assert_eq!(v.current(), 15);
    }

    #[test]
    fn idle_channel_leaves_the_minimum_and_rejoins_when_caught_up() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 10);
        v.on_watermark(1, 5);
        assert_eq!(v.current(), 5);
        // Channel 1 held the minimum: going idle releases channel 0's watermark at once.
        assert_eq!(wm(v.on_idle(1)), Some(10));
        assert_eq!(wm(v.on_watermark(0, 20)), Some(20));
        // Channel 1 comes back with a stale watermark: it does not hold progress back...
        let o = v.on_watermark(1, 7);
        assert_eq!(o.watermark, None);
        assert_eq!(wm(v.on_watermark(0, 30)), Some(30));
        // ...until it catches up with the emitted watermark.
        assert_eq!(wm(v.on_watermark(1, 31)), None);
        assert_eq!(wm(v.on_watermark(0, 40)), Some(31));
    }

    #[test]
    fn all_idle_flushes_the_maximum_then_reports_idle() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 10);
        v.on_watermark(1, 20);
        assert_eq!(v.current(), 10);
        let o = v.on_idle(1);
        assert_eq!((o.watermark, o.idle), (None, false));
        let o = v.on_idle(0);
        assert_eq!((o.watermark, o.idle), (Some(20), true));
        assert!(v.is_idle());
        let o = v.on_record(0);
        assert!(o.active);
        assert!(!v.is_idle());
    }

    #[test]
    fn bad_channel_index_is_counted_not_a_panic() {
        let mut v = WatermarkValve::new(1);
        assert_eq!(v.on_watermark(3, 1), ValveOutput::default());
        assert_eq!(v.on_idle(3), ValveOutput::default());
        assert_eq!(v.on_record(3), ValveOutput::default());
        assert_eq!(v.dropped(), 1);
    }
}
