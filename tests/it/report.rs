//! The HTML report of three nights of the tiny fixture, checked as text and in a real browser
//! (headless Chromium: `apt-get install -y chromium`; CI installs it): every section is there,
//! the charts are inline SVG, nothing is fetched from the network, it renders to a non-blank
//! image at a phone's width, and the index links every published date. The third night runs
//! with another configuration and the slow GEMM fallback: its report is not "normal" and says
//! where it changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The sections every report has, by id.
const SECTIONS: [&str; 7] = [
    "verdict",
    "summary",
    "metrics",
    "trends",
    "distribution",
    "changes",
    "samples",
];

/// The Chromium binary; fails (never skips) when there is none.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        {
            return found;
        }
    }
    panic!(
        "headless Chromium is needed to check the HTML report in a browser and none is installed: \
         on Debian/Ubuntu run `apt-get install -y chromium` (.ci/run does)"
    );
}

/// Headless Chromium on `page` at `width` x `height`: the DOM after rendering, and a screenshot.
fn browse(page: &Path, shot: &Path, width: u32, height: u32) -> String {
    let browser = chromium();
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
    ];
    let window = format!("--window-size={width},{height}");
    let dom = Command::new(&browser)
        .args(common)
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium runs");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let screenshot = format!("--screenshot={}", shot.display());
    let o = Command::new(&browser)
        .args(common)
        .args([&screenshot, &window, &url])
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(dom.stdout).unwrap()
}

/// The screenshot's size and how many distinct colours it has.
fn picture(shot: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = bytes.chunks(px).collect();
    (info.width, info.height, colours.len())
}

fn run(dir: &Path, config: &Path, date: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["run", "--config", config.to_str().unwrap(), "--date", date];
    args.extend(extra);
    let o = recjob_env(dir, &args, env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    stderr(&o)
}

#[test]
fn the_report_has_every_section_renders_in_a_browser_and_says_what_changed() {
    chromium();
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let out = tmp.path().join("out");
    run(tmp.path(), &config, "2024-01-04", &[], &[]);
    run(tmp.path(), &config, "2024-01-05", &[], &[]);
    // Another configuration, the slow GEMM path, and a gap (2024-01-06 has no behavior).
    let log = run(
        tmp.path(),
        &config,
        "2024-01-07",
        &["--set", "similar_items.k=4"],
        &[("RECJOB_BLAS", "gemm")],
    );
    assert!(
        log.contains("slow GEMM fallback") && log.contains("apt-get install libopenblas0-pthread"),
        "the run warns about the BLAS fallback and names the fix: {log}"
    );

    let report = out.join("reports/dt=2024-01-05/report.html");
    let m = manifest(&out, "2024-01-05");
    assert!(
        m["report"]
            .as_str()
            .unwrap()
            .ends_with("reports/dt=2024-01-05/report.html"),
        "the manifest links the report: {}",
        m["report"]
    );
    let html = std::fs::read_to_string(&report).unwrap();
    for id in SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    assert!(html.contains("name=\"viewport\""), "readable on a phone");
    for remote in ["<script", "<link", "src=\"http", "href=\"http", "url(http"] {
        assert!(!html.contains(remote), "self-contained, no {remote}");
    }
    assert!(
        html.matches("<svg").count() >= 5,
        "three trends, two distributions"
    );
    assert!(html.contains("Against dt=2024-01-04"), "day over day");
    assert!(
        html.contains("recall@5") && html.contains("K=5"),
        "metrics at K"
    );
    let catalog = read_file(&repo().join("fixtures/tiny/catalog/dt=2024-01-01/part-0.parquet"));
    let titles: Vec<String> = catalog
        .iter()
        .flat_map(|b| col_strings(b, "title"))
        .collect();
    let samples = &html[html.find("<section id=\"samples\">").unwrap()..];
    assert!(
        titles.iter().any(|t| samples.contains(t.as_str())),
        "sample lists show titles"
    );
    assert!(
        samples.contains("repeat_score")
            && samples.contains("neighbor_score")
            && samples.contains("model part")
    );

    // The third night: not normal, and the report says where.
    let third = std::fs::read_to_string(out.join("reports/dt=2024-01-07/report.html")).unwrap();
    let verdict = &third[third.find("<section id=\"verdict\">").unwrap()
        ..third.find("<section id=\"summary\">").unwrap()];
    assert!(
        verdict.contains("Not normal") && verdict.contains("BLAS"),
        "{verdict}"
    );
    assert!(
        verdict.contains("configuration") && verdict.contains("gap"),
        "{verdict}"
    );
    assert!(
        third.contains("configuration changed"),
        "the trend marks the change"
    );

    // In a browser, at a phone's width.
    let dom = browse(&report, &tmp.path().join("report.png"), 390, 2400);
    for id in SECTIONS {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "rendered section {id}"
        );
    }
    assert!(dom.matches("<svg").count() >= 5, "rendered charts");
    let (w, h, colours) = picture(&tmp.path().join("report.png"));
    assert_eq!((w, h), (390, 2400));
    assert!(
        colours > 16,
        "the screenshot is not blank: {colours} colours"
    );
    assert!(
        std::fs::metadata(tmp.path().join("report.png"))
            .unwrap()
            .len()
            > 20_000
    );

    let index = out.join("reports/index.html");
    let dom = browse(&index, &tmp.path().join("index.png"), 1024, 768);
    for date in ["2024-01-04", "2024-01-05", "2024-01-07"] {
        assert!(
            dom.contains(&format!("href=\"dt={date}/report.html\"")),
            "index links {date}"
        );
    }
    let (_, _, colours) = picture(&tmp.path().join("index.png"));
    assert!(colours > 16, "the index renders");
}

#[test]
fn recjob_report_rebuilds_reports_from_published_data() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let out = tmp.path().join("out");
    run(tmp.path(), &config, "2024-01-04", &[], &[]);
    let report = out.join("reports/dt=2024-01-04/report.html");
    std::fs::remove_dir_all(out.join("reports")).unwrap();
    let cfg = config.to_str().unwrap();
    let o = recjob(tmp.path(), &["report", "--config", cfg]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        printed.contains("reports/dt=2024-01-04/report.html")
            && printed.contains("reports/index.html"),
        "{printed}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("No earlier published date to compare with"),
        "first date"
    );
    let o = recjob(
        tmp.path(),
        &["report", "--config", cfg, "--date", "2024-01-05"],
    );
    assert_eq!(code(&o), 1, "an unpublished date: {}", stderr(&o));
    assert!(stderr(&o).contains("not published"), "{}", stderr(&o));
}

/// `recjob report` racing a `run --force` of the same date: the report held back just before it
/// writes the page (exactly that request held until the rerun is done) while the rerun publishes and
/// writes its own; the page that stays is the published run's, because the writer sees the new
/// manifest and builds again.
#[test]
fn a_report_written_while_its_date_is_republished_ends_up_describing_the_new_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let out = tmp.path().join("out");
    run(tmp.path(), &config, "2024-01-04", &[], &[]);
    let cfg = config.to_str().unwrap();
    let report_args = ["report", "--config", cfg, "--date", "2024-01-04"];
    let report = held_back(
        tmp.path(),
        &report_args,
        "reports/dt=2024-01-04/report.html",
        "put",
        || {
            run(tmp.path(), &config, "2024-01-04", &["--force"], &[]);
        },
    );
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    assert!(
        stderr(&report).contains("republished while the reports were written"),
        "{}",
        stderr(&report)
    );
    let published = manifest(&out, "2024-01-04")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let html = std::fs::read_to_string(out.join("reports/dt=2024-01-04/report.html")).unwrap();
    assert!(
        html.contains(&published),
        "the page names the published run {published}"
    );
}
