//! Dioxus events as dioxus-liveview 0.7's interpreter sends them (for the tests and the
//! latency example, which speak its protocol without a browser).

/// A click on element `id` (its `data-dioxus-id`; the first listener's element is 1).
pub(crate) fn click(id: u64) -> String {
    let point = serde_json::json!({
        "alt_key": false, "button": 0, "buttons": 0, "client_x": 1.0, "client_y": 1.0,
        "ctrl_key": false, "meta_key": false, "offset_x": 1.0, "offset_y": 1.0, "page_x": 1.0,
        "page_y": 1.0, "screen_x": 1.0, "screen_y": 1.0, "shift_key": false
    });
    serde_json::json!({
        "method": "user_event",
        "params": {"name": "click", "element": id, "bubbles": true, "data": point}
    })
    .to_string()
}
