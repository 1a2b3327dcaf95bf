//! Colour scales. Signed maps use a diverging blue–white–red scale that is white at
//! zero, so "no evidence" is the page colour; absolute maps use a sequential
//! white-to-dark-red scale that agrees with the red half of the diverging one.

use image::Rgb;

// Anchors (value, colour), our own picks in the spirit of ColorBrewer RdBu / Reds.
const NEGATIVE: [(f32, [u8; 3]); 3] = [(0.0, [255, 255, 255]), (0.5, [120, 170, 230]), (1.0, [20, 50, 190])];
const POSITIVE: [(f32, [u8; 3]); 3] = [(0.0, [255, 255, 255]), (0.5, [240, 140, 110]), (1.0, [190, 15, 30])];
const SEQUENTIAL: [(f32, [u8; 3]); 4] =
    [(0.0, [255, 255, 255]), (0.35, [250, 175, 130]), (0.7, [215, 45, 35]), (1.0, [105, 0, 15])];

fn lerp_anchors(anchors: &[(f32, [u8; 3])], t: f32) -> Rgb<u8> {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    for w in anchors.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        if t <= t1 {
            let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
            let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * f).round() as u8;
            return Rgb([mix(c0[0], c1[0]), mix(c0[1], c1[1]), mix(c0[2], c1[2])]);
        }
    }
    Rgb(anchors[anchors.len() - 1].1)
}

/// Diverging scale for `v` in [−1, 1]: −1 blue, 0 white, +1 red (clamped outside).
pub fn diverging(v: f32) -> Rgb<u8> {
    if v < 0.0 {
        lerp_anchors(&NEGATIVE, -v)
    } else {
        lerp_anchors(&POSITIVE, v)
    }
}

/// Sequential scale for `v` in [0, 1]: 0 white, 1 dark red (clamped outside).
pub fn sequential(v: f32) -> Rgb<u8> {
    lerp_anchors(&SEQUENTIAL, v)
}

/// Grey level for an intensity in [0, 1].
pub fn gray(v: f32) -> Rgb<u8> {
    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([g, g, g])
}

/// `(1 − alpha)·under + alpha·over`, per channel.
pub fn blend(under: Rgb<u8>, over: Rgb<u8>, alpha: f32) -> Rgb<u8> {
    let a = alpha.clamp(0.0, 1.0);
    let m = |u: u8, o: u8| ((1.0 - a) * u as f32 + a * o as f32).round() as u8;
    Rgb([m(under[0], over[0]), m(under[1], over[1]), m(under[2], over[2])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_known_values() {
        assert_eq!(diverging(0.0), Rgb([255, 255, 255]));
        assert_eq!(diverging(1.0), Rgb([190, 15, 30]));
        assert_eq!(diverging(-1.0), Rgb([20, 50, 190]));
        // saturates beyond ±1, and NaN is treated as zero
        assert_eq!(diverging(7.0), diverging(1.0));
        assert_eq!(diverging(-7.0), diverging(-1.0));
        assert_eq!(diverging(f32::NAN), Rgb([255, 255, 255]));
        // +max is red (red channel dominates), −max is blue
        let r = diverging(1.0);
        assert!(r[0] > 150 && r[1] < 60 && r[2] < 60);
        let b = diverging(-1.0);
        assert!(b[2] > 150 && b[0] < 60);
        // halfway is the middle anchor; a quarter is halfway between white and it
        assert_eq!(diverging(0.5), Rgb([240, 140, 110]));
        assert_eq!(diverging(0.25), Rgb([248, 198, 183]));
        // monotone: stronger evidence is darker
        let lum = |c: Rgb<u8>| c[0] as u32 + c[1] as u32 + c[2] as u32;
        for i in 0..10 {
            let (a, b) = (i as f32 / 10.0, (i + 1) as f32 / 10.0);
            assert!(lum(diverging(b)) < lum(diverging(a)));
            assert!(lum(diverging(-b)) < lum(diverging(-a)));
            assert!(lum(sequential(b)) < lum(sequential(a)));
        }
    }

    #[test]
    fn sequential_gray_and_blend() {
        assert_eq!(sequential(0.0), Rgb([255, 255, 255]));
        assert_eq!(sequential(1.0), Rgb([105, 0, 15]));
        assert_eq!(gray(0.5), Rgb([128, 128, 128]));
        assert_eq!(blend(Rgb([0, 0, 0]), Rgb([200, 100, 50]), 0.5), Rgb([100, 50, 25]));
        assert_eq!(blend(Rgb([10, 20, 30]), Rgb([200, 100, 50]), 0.0), Rgb([10, 20, 30]));
    }
}
