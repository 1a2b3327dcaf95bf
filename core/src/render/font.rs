//! A tiny built-in bitmap font (5×7 cells plus one descender row), so pictures can
//! carry legends and captions without a font file or a system dependency.
//!
//! Each glyph is drawn as eight rows of five `#`/`.` cells; rows 0–6 hold capitals
//! and digits, row 7 holds descenders (g, j, p, q, y, comma).

use image::{Rgb, RgbImage};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Glyph cell width in font pixels (before scaling).
pub const GLYPH_W: u32 = 5;
/// Glyph cell height, descender row included.
pub const GLYPH_H: u32 = 8;
/// Horizontal advance per character.
pub const ADVANCE: u32 = GLYPH_W + 1;
/// Vertical advance per line.
pub const LINE_H: u32 = GLYPH_H + 2;

// Our own glyph table. Rows are separated by spaces; a missing 8th row is blank.
static GLYPHS: &[(char, &str)] = &[
    (' ', "..... ..... ..... ..... ..... ..... ....."),
    ('0', ".###. #...# #..## #.#.# ##..# #...# .###."),
    ('1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('2', ".###. #...# ....# ...#. ..#.. .#... #####"),
    ('3', "##### ...#. ..#.. ...#. ....# #...# .###."),
    ('4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."),
    ('5', "##### #.... ####. ....# ....# #...# .###."),
    ('6', "..##. .#... #.... ####. #...# #...# .###."),
    ('7', "##### ....# ...#. ..#.. .#... .#... .#..."),
    ('8', ".###. #...# #...# .###. #...# #...# .###."),
    ('9', ".###. #...# #...# .#### ....# ...#. .##.."),
    ('A', ".###. #...# #...# ##### #...# #...# #...#"),
    ('B', "####. #...# #...# ####. #...# #...# ####."),
    ('C', ".###. #...# #.... #.... #.... #...# .###."),
    ('D', "###.. #..#. #...# #...# #...# #..#. ###.."),
    ('E', "##### #.... #.... ####. #.... #.... #####"),
    ('F', "##### #.... #.... ####. #.... #.... #...."),
    ('G', ".###. #...# #.... #.### #...# #...# .####"),
    ('H', "#...# #...# #...# ##### #...# #...# #...#"),
    ('I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('J', "..### ...#. ...#. ...#. ...#. #..#. .##.."),
    ('K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"),
    ('L', "#.... #.... #.... #.... #.... #.... #####"),
    ('M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"),
    ('N', "#...# #...# ##..# #.#.# #..## #...# #...#"),
    ('O', ".###. #...# #...# #...# #...# #...# .###."),
    ('P', "####. #...# #...# ####. #.... #.... #...."),
    ('Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"),
    ('R', "####. #...# #...# ####. #.#.. #..#. #...#"),
    ('S', ".#### #.... #.... .###. ....# ....# ####."),
    ('T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('U', "#...# #...# #...# #...# #...# #...# .###."),
    ('V', "#...# #...# #...# #...# #...# .#.#. ..#.."),
    ('W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."),
    ('X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
    ('Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."),
    ('Z', "##### ....# ...#. ..#.. .#... #.... #####"),
    ('a', "..... ..... .###. ....# .#### #...# .####"),
    ('b', "#.... #.... ####. #...# #...# #...# ####."),
    ('c', "..... ..... .###. #.... #.... #...# .###."),
    ('d', "....# ....# .#### #...# #...# #...# .####"),
    ('e', "..... ..... .###. #...# ##### #.... .###."),
    ('f', "..##. .#..# .#... ###.. .#... .#... .#..."),
    ('g', "..... ..... .#### #...# #...# .#### ....# .###."),
    ('h', "#.... #.... #.##. ##..# #...# #...# #...#"),
    ('i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."),
    ('j', "...#. ..... ..##. ...#. ...#. ...#. #..#. .##.."),
    ('k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."),
    ('l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('m', "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#"),
    ('n', "..... ..... #.##. ##..# #...# #...# #...#"),
    ('o', "..... ..... .###. #...# #...# #...# .###."),
    ('p', "..... ..... ####. #...# #...# ####. #.... #...."),
    ('q', "..... ..... .#### #...# #...# .#### ....# ....#"),
    ('r', "..... ..... #.##. ##..# #.... #.... #...."),
    ('s', "..... ..... .###. #.... .###. ....# ####."),
    ('t', ".#... .#... ###.. .#... .#... .#..# ..##."),
    ('u', "..... ..... #...# #...# #...# #..## .##.#"),
    ('v', "..... ..... #...# #...# #...# .#.#. ..#.."),
    ('w', "..... ..... #...# #...# #.#.# #.#.# .#.#."),
    ('x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"),
    ('y', "..... ..... #...# #...# #...# .#### ....# .###."),
    ('z', "..... ..... ##### ...#. ..#.. .#... #####"),
    ('.', "..... ..... ..... ..... ..... .##.. .##.."),
    (',', "..... ..... ..... ..... ..... .##.. ..#.. .#..."),
    ('-', "..... ..... ..... .###. ..... ..... ....."),
    ('+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."),
    ('=', "..... ..... ##### ..... ##### ..... ....."),
    (':', "..... .##.. .##.. ..... .##.. .##.. ....."),
    (';', "..... .##.. .##.. ..... .##.. ..#.. .#..."),
    ('(', "...#. ..#.. .#... .#... .#... ..#.. ...#."),
    (')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
    ('[', ".###. .#... .#... .#... .#... .#... .###."),
    (']', ".###. ...#. ...#. ...#. ...#. ...#. .###."),
    ('{', "...## ..#.. ..#.. .#... ..#.. ..#.. ...##"),
    ('}', "##... ..#.. ..#.. ...#. ..#.. ..#.. ##..."),
    ('/', "....# ....# ...#. ..#.. .#... #.... #...."),
    ('\\', "#.... #.... .#... ..#.. ...#. ....# ....#"),
    ('_', "..... ..... ..... ..... ..... ..... #####"),
    ('%', "##... ##..# ...#. ..#.. .#... #..## ...##"),
    ('?', ".###. #...# ....# ...#. ..#.. ..... ..#.."),
    ('!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."),
    ('\'', "..#.. ..#.. .#... ..... ..... ..... ....."),
    ('"', ".#.#. .#.#. ..... ..... ..... ..... ....."),
    ('`', ".#... ..#.. ..... ..... ..... ..... ....."),
    ('<', "...#. ..#.. .#... #.... .#... ..#.. ...#."),
    ('>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."),
    ('*', "..... ..#.. #.#.# .###. #.#.# ..#.. ....."),
    ('#', ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#."),
    ('|', "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('~', "..... ..... .#... #.#.# ...#. ..... ....."),
    ('&', ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#"),
    ('@', ".###. #...# #.### #.#.# #.### #.... .###."),
    ('^', "..#.. .#.#. #...# ..... ..... ..... ....."),
    ('$', "..#.. .#### #.#.. .###. ..#.# ####. ..#.."),
    ('×', "..... #...# .#.#. ..#.. .#.#. #...# ....."),
    ('−', "..... ..... ..... .###. ..... ..... ....."),
    ('→', "..... ..#.. ...#. ##### ...#. ..#.. ....."),
    ('≥', ".#... ..#.. ...#. ..#.. .#... ..... #####"),
    ('≤', "...#. ..#.. .#... ..#.. ...#. ..... #####"),
    ('²', ".##.. ...#. ..#.. .###. ..... ..... ....."),
    ('σ', "..... ..... .#### #..#. #...# #...# .###."),
    ('ε', "..... ..... .###. #.... ###.. #.... .###."),
    ('α', "..... ..... .##.# #..#. #..#. #..#. .##.#"),
    ('β', ".##.. #..#. #.#.. #..#. #...# ##.#. #.... #...."),
    ('γ', "..... ..... #...# #...# .#.#. ..#.. ..#.. ..#.."),
    ('Δ', "..... ..#.. .#.#. #...# #...# ##### ....."),
    ('·', "..... ..... ..... .##.. .##.. ..... ....."),
];

/// Unknown characters render as a hollow box so a gap in the table shows.
const BOX: &str = "##### #...# #...# #...# #...# #...# #####";

fn bits(rows: &str) -> [u8; GLYPH_H as usize] {
    let mut out = [0u8; GLYPH_H as usize];
    for (r, row) in rows.split(' ').take(GLYPH_H as usize).enumerate() {
        for (c, ch) in row.chars().take(GLYPH_W as usize).enumerate() {
            if ch == '#' {
                out[r] |= 1 << (GLYPH_W as usize - 1 - c);
            }
        }
    }
    out
}

fn table() -> &'static HashMap<char, [u8; GLYPH_H as usize]> {
    static T: OnceLock<HashMap<char, [u8; GLYPH_H as usize]>> = OnceLock::new();
    T.get_or_init(|| GLYPHS.iter().map(|(c, rows)| (*c, bits(rows))).collect())
}

/// The glyph rows of `c` (bit 4 is the leftmost column); unknown characters give a box.
pub fn glyph(c: char) -> [u8; GLYPH_H as usize] {
    table().get(&c).copied().unwrap_or_else(|| bits(BOX))
}

/// Whether the font has a glyph for `c`.
pub fn has_glyph(c: char) -> bool {
    table().contains_key(&c)
}

/// Size in pixels of `text` (lines split at `\n`) drawn at integer `scale`.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let s = scale.max(1);
    let lines: Vec<&str> = text.split('\n').collect();
    let w = lines.iter().map(|l| l.chars().count() as u32).max().unwrap_or(0);
    let w = if w == 0 { 0 } else { (w * ADVANCE - 1) * s };
    let h = if text.is_empty() { 0 } else { (lines.len() as u32 * LINE_H - (LINE_H - GLYPH_H)) * s };
    (w, h)
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text_size(text, scale).0
}

/// Draws `text` with its top-left corner at (`x`, `y`); pixels outside the image
/// are clipped. Returns the drawn size.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: Rgb<u8>, scale: u32) -> (u32, u32) {
    let s = scale.max(1) as i64;
    let (w, h) = (img.width() as i64, img.height() as i64);
    for (li, line) in text.split('\n').enumerate() {
        let y0 = y + li as i64 * LINE_H as i64 * s;
        for (ci, ch) in line.chars().enumerate() {
            let x0 = x + ci as i64 * ADVANCE as i64 * s;
            let g = glyph(ch);
            for (r, bits) in g.iter().enumerate() {
                for c in 0..GLYPH_W as i64 {
                    if bits & (1 << (GLYPH_W as i64 - 1 - c)) == 0 {
                        continue;
                    }
                    for dy in 0..s {
                        for dx in 0..s {
                            let (px, py) = (x0 + c * s + dx, y0 + r as i64 * s + dy);
                            if px >= 0 && py >= 0 && px < w && py < h {
                                img.put_pixel(px as u32, py as u32, color);
                            }
                        }
                    }
                }
            }
        }
    }
    text_size(text, scale)
}

/// Draws `text` horizontally centred on `cx`.
pub fn draw_text_centered(img: &mut RgbImage, cx: i64, y: i64, text: &str, color: Rgb<u8>, scale: u32) {
    let w = text_width(text, scale) as i64;
    draw_text(img, cx - w / 2, y, text, color, scale);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_table_is_well_formed() {
        for (c, rows) in GLYPHS {
            let parts: Vec<&str> = rows.split(' ').collect();
            assert!(parts.len() == 7 || parts.len() == 8, "{c:?}: {} rows", parts.len());
            assert!(parts.iter().all(|p| p.chars().count() == 5), "{c:?}: row width");
            assert!(parts.iter().all(|p| p.chars().all(|x| x == '#' || x == '.')), "{c:?}");
        }
        let mut seen = std::collections::HashSet::new();
        assert!(GLYPHS.iter().all(|(c, _)| seen.insert(*c)), "a character is defined twice");
        for c in ('0'..='9').chain('a'..='z').chain('A'..='Z') {
            assert!(has_glyph(c), "{c}");
            if c != ' ' {
                assert!(glyph(c).iter().any(|r| *r != 0), "{c} is blank");
            }
        }
        // distinct glyphs for characters that are easy to mix up
        assert_ne!(glyph('0'), glyph('O'));
        assert_ne!(glyph('1'), glyph('l'));
        assert_eq!(glyph('\u{1F600}'), bits(BOX));
    }

    #[test]
    fn text_rendering_draws_pixels_inside_its_box() {
        let mut img = RgbImage::from_pixel(60, 30, Rgb([255, 255, 255]));
        let (w, h) = draw_text(&mut img, 2, 3, "Ab1", Rgb([0, 0, 0]), 2);
        assert_eq!((w, h), ((3 * 6 - 1) * 2, 8 * 2));
        let dark: Vec<(u32, u32)> =
            img.enumerate_pixels().filter(|(_, _, p)| p.0 == [0, 0, 0]).map(|(x, y, _)| (x, y)).collect();
        assert!(dark.len() > 30, "{}", dark.len());
        assert!(dark.iter().all(|&(x, y)| x >= 2 && x < 2 + w && y >= 3 && y < 3 + h));
        // 'A' row 0 is ".###.": at scale 2 its first lit pixel is at x = 2 + 2
        assert_eq!(img.get_pixel(4, 3).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(2, 3).0, [255, 255, 255]);
        // clipping, multi-line sizes
        draw_text(&mut img, -5, -5, "WWWWWWWWWWWWWW", Rgb([1, 2, 3]), 3);
        assert_eq!(text_size("ab\nabcd", 1), (23, 18));
        assert_eq!(text_size("", 1), (0, 0));
    }
}
