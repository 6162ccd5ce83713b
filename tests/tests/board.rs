//! The board in a real headless Chromium (chromedriver + fantoccini) against a real hub,
//! real gateways and simulated devices. Screenshots go to `$GATEHOUSE_ARTIFACTS`, else
//! `target/board-artifacts/`.

// `board/` holds the harness; a `board` module would clash with this file's own name.
mod common;
#[path = "board/mod.rs"]
mod harness;

use std::time::Duration;

use gatehouse_sim::scenario::EstateSpec;
use harness::{
    browser::{Driver, Page},
    system::{SERIAL, Sut},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_smoke() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[EstateSpec::new("estate-a", "Riverside Gardens")]).await;
    let driver = Driver::start();
    let page = Page {
        client: driver.session().await,
        base: sut.proxy.base(),
        test: "smoke",
    };
    page.goto("api/v1/estates").await;
    let body = page
        .wait_js(
            "estates JSON",
            Duration::from_secs(10),
            "return document.body.innerText.includes('estate-a') ? document.body.innerText : null",
            vec![],
        )
        .await;
    println!("{body}");
    page.shot("estates", "en").await;
    println!("{:?}", page.console_errors().await);
    page.client.clone().close().await.ok();
    sut.stop().await;
}
