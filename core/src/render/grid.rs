//! A grid compositor: rows × columns of tiles with row and column captions and an
//! optional title. The gallery, CLEAR and the experiment figures share it.

use super::font::{draw_text, text_size};
use image::{Rgb, RgbImage};

/// A grid of optional tiles. Empty cells are drawn as a light grey blank tile of
/// the grid's largest tile size, marked "n/a".
#[derive(Debug, Clone)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
    cells: Vec<Option<RgbImage>>,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    pub title: Option<String>,
    /// Space between and around cells, in pixels.
    pub pad: u32,
    pub font_scale: u32,
    pub background: Rgb<u8>,
    pub ink: Rgb<u8>,
}

/// Where everything goes: the picture size and each column's x and row's y.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub col_x: Vec<u32>,
    pub col_w: Vec<u32>,
    pub row_y: Vec<u32>,
    pub row_h: Vec<u32>,
    /// Width of the row-caption column (0 without row captions).
    pub label_w: u32,
    /// Height of the column-caption band (0 without column captions).
    pub header_h: u32,
    /// Height of the title band (0 without a title).
    pub title_h: u32,
}

impl Grid {
    pub fn new(rows: usize, cols: usize) -> Self {
        Grid {
            rows,
            cols,
            cells: vec![None; rows * cols],
            row_labels: vec![String::new(); rows],
            col_labels: vec![String::new(); cols],
            title: None,
            pad: 6,
            font_scale: 1,
            background: Rgb([255, 255, 255]),
            ink: Rgb([20, 20, 20]),
        }
    }

    /// Puts a tile in a cell; out-of-range cells are ignored and reported as `false`.
    pub fn set(&mut self, row: usize, col: usize, tile: RgbImage) -> bool {
        if row < self.rows && col < self.cols {
            self.cells[row * self.cols + col] = Some(tile);
            true
        } else {
            false
        }
    }

    pub fn get(&self, row: usize, col: usize) -> Option<&RgbImage> {
        self.cells.get(row * self.cols + col).and_then(|c| c.as_ref())
    }

    /// Caption left of a row (may hold several lines separated by `\n`).
    pub fn set_row_label(&mut self, row: usize, text: impl Into<String>) {
        if let Some(l) = self.row_labels.get_mut(row) {
            *l = text.into();
        }
    }

    /// Caption above a column (may hold several lines).
    pub fn set_col_label(&mut self, col: usize, text: impl Into<String>) {
        if let Some(l) = self.col_labels.get_mut(col) {
            *l = text.into();
        }
    }

    fn blank_size(&self) -> (u32, u32) {
        let w = self.cells.iter().flatten().map(|t| t.width()).max().unwrap_or(16);
        let h = self.cells.iter().flatten().map(|t| t.height()).max().unwrap_or(16);
        (w, h)
    }

    fn cell_size(&self, r: usize, c: usize) -> (u32, u32) {
        self.get(r, c).map(|t| t.dimensions()).unwrap_or_else(|| self.blank_size())
    }

    /// Column widths fit the widest tile and caption; row heights the tallest tile
    /// and row caption.
    pub fn layout(&self) -> Layout {
        let fs = self.font_scale.max(1);
        let pad = self.pad;
        let col_w: Vec<u32> = (0..self.cols)
            .map(|c| {
                let tiles = (0..self.rows).map(|r| self.cell_size(r, c).0).max().unwrap_or(0);
                tiles.max(text_size(&self.col_labels[c], fs).0)
            })
            .collect();
        let row_h: Vec<u32> = (0..self.rows)
            .map(|r| {
                let tiles = (0..self.cols).map(|c| self.cell_size(r, c).1).max().unwrap_or(0);
                tiles.max(text_size(&self.row_labels[r], fs).1)
            })
            .collect();
        let label_w = self.row_labels.iter().map(|l| text_size(l, fs).0).max().unwrap_or(0);
        let header_h = self.col_labels.iter().map(|l| text_size(l, fs).1).max().unwrap_or(0);
        let title_h = self.title.as_deref().map(|t| text_size(t, fs + 1).1).unwrap_or(0);
        // A band only takes padding when it has content.
        let band = |x: u32| if x > 0 { x + pad } else { 0 };
        let x0 = pad + band(label_w);
        let y0 = pad + band(title_h) + band(header_h);
        let mut col_x = Vec::with_capacity(self.cols);
        let mut x = x0;
        for w in &col_w {
            col_x.push(x);
            x += w + pad;
        }
        let mut row_y = Vec::with_capacity(self.rows);
        let mut y = y0;
        for h in &row_h {
            row_y.push(y);
            y += h + pad;
        }
        let title_w = self.title.as_deref().map(|t| text_size(t, fs + 1).0 + 2 * pad).unwrap_or(0);
        Layout { width: x.max(title_w).max(1), height: y.max(1), col_x, col_w, row_y, row_h, label_w, header_h, title_h }
    }

    /// Draws the grid.
    pub fn render(&self) -> RgbImage {
        let fs = self.font_scale.max(1);
        let l = self.layout();
        let mut img = RgbImage::from_pixel(l.width, l.height, self.background);
        if let Some(t) = &self.title {
            draw_text(&mut img, self.pad as i64, self.pad as i64, t, self.ink, fs + 1);
        }
        let header_y = self.pad + if l.title_h > 0 { l.title_h + self.pad } else { 0 };
        for c in 0..self.cols {
            let (tw, _) = text_size(&self.col_labels[c], fs);
            let x = l.col_x[c] + (l.col_w[c] - tw) / 2;
            let th = text_size(&self.col_labels[c], fs).1;
            // bottom-align captions so multi-line ones sit on the tiles
            draw_text(&mut img, x as i64, (header_y + l.header_h - th) as i64, &self.col_labels[c], self.ink, fs);
        }
        let (bw, bh) = self.blank_size();
        for r in 0..self.rows {
            let (_, th) = text_size(&self.row_labels[r], fs);
            let y = l.row_y[r] + (l.row_h[r] - th) / 2;
            draw_text(&mut img, self.pad as i64, y as i64, &self.row_labels[r], self.ink, fs);
            for c in 0..self.cols {
                let (x, y) = (l.col_x[c], l.row_y[r]);
                match self.get(r, c) {
                    Some(t) => {
                        let dx = (l.col_w[c] - t.width()) / 2;
                        image::imageops::replace(&mut img, t, (x + dx) as i64, y as i64);
                    }
                    None => {
                        let dx = (l.col_w[c].saturating_sub(bw)) / 2;
                        let blank = blank_tile(bw, bh, fs);
                        image::imageops::replace(&mut img, &blank, (x + dx) as i64, y as i64);
                    }
                }
            }
        }
        img
    }
}

/// A light grey tile marked "n/a", for a cell whose method failed or refused.
pub fn blank_tile(w: u32, h: u32, font_scale: u32) -> RgbImage {
    let mut t = RgbImage::from_pixel(w.max(1), h.max(1), Rgb([238, 238, 238]));
    let (tw, th) = text_size("n/a", font_scale);
    draw_text(
        &mut t,
        (w as i64 - tw as i64) / 2,
        (h as i64 - th as i64) / 2,
        "n/a",
        Rgb([150, 150, 150]),
        font_scale,
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::font::{ADVANCE, LINE_H, GLYPH_H};

    #[test]
    fn layout_size_without_captions() {
        let mut g = Grid::new(2, 3);
        g.pad = 4;
        for r in 0..2 {
            for c in 0..3 {
                assert!(g.set(r, c, RgbImage::from_pixel(10, 20, Rgb([0, 0, 0]))));
            }
        }
        assert!(!g.set(2, 0, RgbImage::new(1, 1)));
        let l = g.layout();
        assert_eq!((l.width, l.height), (3 * 10 + 4 * 4, 2 * 20 + 3 * 4));
        assert_eq!(l.col_x, vec![4, 18, 32]);
        assert_eq!(l.row_y, vec![4, 28]);
        let img = g.render();
        assert_eq!(img.dimensions(), (46, 52));
        assert_eq!(*img.get_pixel(4, 4), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(3, 3), Rgb([255, 255, 255]));
    }

    #[test]
    fn layout_size_with_captions_and_blanks() {
        let mut g = Grid::new(2, 2);
        g.pad = 5;
        g.set(0, 0, RgbImage::from_pixel(30, 30, Rgb([0, 0, 0])));
        g.set_row_label(0, "row0");
        g.set_row_label(1, "r1\nsecond");
        g.set_col_label(0, "input");
        g.set_col_label(1, "a long column caption");
        let l = g.layout();
        let label_w = (6 * ADVANCE - 1) as u32; // "second"
        let cap_w = (21 * ADVANCE - 1) as u32;
        assert_eq!(l.label_w, label_w);
        assert_eq!(l.header_h, GLYPH_H);
        assert_eq!(l.col_w, vec![30, cap_w]);
        assert_eq!(l.width, 5 + label_w + 5 + 30 + 5 + cap_w + 5);
        assert_eq!(l.height, 5 + GLYPH_H + 5 + 30 + 5 + 30 + 5);
        g.title = Some("Title".into());
        let l2 = g.layout();
        assert_eq!(l2.height, l.height + 2 * GLYPH_H + 5);
        let _ = LINE_H;
        // the blank cell (1, 1) is light grey, centred in its wide column
        let img = g.render();
        let (x, y) = (l2.col_x[1] + (cap_w - 30) / 2 + 1, l2.row_y[1] + 1);
        assert_eq!(*img.get_pixel(x, y), Rgb([238, 238, 238]));
        // captions drew dark pixels in the header band
        let dark = img.enumerate_pixels().filter(|(_, y, p)| *y < l2.row_y[0] && p[0] < 60).count();
        assert!(dark > 50, "{dark}");
    }
}
