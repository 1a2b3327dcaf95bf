//! HTML pages written next to pictures, so a PNG comes with its legend, the
//! parameters that made it and any notes.

use crate::{io, Error, Result};
use std::path::{Path, PathBuf};

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An HTML table from plain-text cells (escaped).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table>\n<tr>");
    for h in headers {
        s += &format!("<th>{}</th>", escape(h));
    }
    s += "</tr>\n";
    for r in rows {
        s += "<tr>";
        for c in r {
            s += &format!("<td>{}</td>", escape(c));
        }
        s += "</tr>\n";
    }
    s + "</table>\n"
}

/// A complete page: title, the picture, then `body_html` (already HTML).
pub fn page(title: &str, image_file: Option<&str>, body_html: &str) -> String {
    let img = image_file
        .map(|f| format!("<p><img src=\"{}\" alt=\"{}\"></p>\n", escape(f), escape(title)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}\n\
         code {{ background: #f4f4f4; padding: 0 3px; }}\n\
         .note {{ color: #a33; }}\n</style>\n</head>\n<body>\n<h1>{t}</h1>\n{img}{body_html}</body>\n</html>\n",
        t = escape(title),
    )
}

/// Writes `page` for the PNG at `png` to the same path with `.html`, atomically,
/// linking the picture by file name. Returns the page's path.
pub fn write_page_for_png(png: &Path, title: &str, body_html: &str) -> Result<PathBuf> {
    let name = png
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::msg(format!("{}: not a file path", png.display())))?;
    let out = png.with_extension("html");
    io::write_atomic(&out, page(title, Some(&name), body_html).as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_and_links_the_picture() {
        assert_eq!(escape("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
        let t = table(&["name", "value"], &[vec!["n<1".into(), "2".into()]]);
        assert!(t.contains("<td>n&lt;1</td>") && t.contains("<th>name</th>"));
        let dir = std::env::temp_dir().join(format!("lumen-html-{}", std::process::id()));
        let p = write_page_for_png(&dir.join("g.png"), "Gallery <1>", "<p>hi</p>").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(p.ends_with("g.html"));
        assert!(s.contains("<img src=\"g.png\"") && s.contains("Gallery &lt;1&gt;") && s.contains("<p>hi</p>"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
