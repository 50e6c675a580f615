//! The little XML reading the plugins need: icecast's `/admin/stats` and nginx-rtmp's `/stat`
//! are flat, machine-written documents, so a full parser would buy nothing.

pub(crate) fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the first `<name>…</name>` in `xml`.
pub(crate) fn element_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

pub(crate) fn element_number(xml: &str, name: &str) -> u64 {
    element_text(xml, name)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}
