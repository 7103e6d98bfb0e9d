//! Stage-1 static Rust workload for hull-sandbox (issue 6): threads, channels,
//! shared state, a barrier, file I/O and a directory listing. The output is
//! deterministic so the differential suite can compare runs byte for byte.
//! Exits with status 4 so the exit code is checked too.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;

const WORKERS: u64 = 4;
const PER_WORKER: u64 = 1000;

/// Workers send partial sums over one channel; the total does not depend on order.
fn channel_sums() {
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let mut handles = Vec::new();
    for id in 0..WORKERS {
        let tx = tx.clone();
        handles.push(thread::spawn(move || {
            let start = id * PER_WORKER;
            let sum: u64 = (start..start + PER_WORKER).sum();
            tx.send((id, sum)).expect("send partial sum");
            id
        }));
    }
    drop(tx);
    let by_id: BTreeMap<u64, u64> = rx.iter().collect();
    let joined: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("join worker"))
        .sum();
    println!("joined worker ids sum to {joined}");
    for (id, sum) in &by_id {
        println!("worker {id}: partial sum {sum}");
    }
    let total: u64 = by_id.values().sum();
    println!(
        "total {total} (expected {})",
        (0..WORKERS * PER_WORKER).sum::<u64>()
    );
}

/// A sync channel with capacity 1 forces the producer to block on the consumer.
fn rendezvous() {
    let (tx, rx) = mpsc::sync_channel::<String>(1);
    let producer = thread::spawn(move || {
        for i in 0..5 {
            tx.send(format!("message {i}")).expect("send message");
        }
    });
    let got: Vec<String> = rx.iter().collect();
    producer.join().expect("join producer");
    println!("received in order: {}", got.join(", "));
}

/// Mutex, atomic counter, barrier and condvar shared by scoped threads.
fn shared_state() {
    let counter = Mutex::new(0u64);
    let atomic = AtomicU64::new(0);
    let barrier = Barrier::new(WORKERS as usize);
    thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..PER_WORKER {
                    *counter.lock().expect("lock counter") += 1;
                    atomic.fetch_add(2, Ordering::Relaxed);
                }
            });
        }
    });
    let count = *counter.lock().expect("lock counter");
    println!(
        "mutex count {count}, atomic count {}",
        atomic.load(Ordering::Relaxed)
    );

    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let waiter = {
        let pair = Arc::clone(&pair);
        thread::spawn(move || {
            let (lock, cvar) = &*pair;
            let mut ready = lock.lock().expect("lock flag");
            while !*ready {
                ready = cvar.wait(ready).expect("wait condvar");
            }
            "condvar woke the waiter"
        })
    };
    *pair.0.lock().expect("lock flag") = true;
    pair.1.notify_all();
    println!("{}", waiter.join().expect("join waiter"));
}

/// Writes a file from one thread and reads it back from another.
fn file_round_trip() {
    let path = "/tmp/threads-rs.txt";
    thread::spawn(move || {
        let mut f = fs::File::create(path).expect("create file");
        for i in 0..10 {
            writeln!(f, "row {i}").expect("write row");
        }
    })
    .join()
    .expect("join writer");
    let text = thread::spawn(move || {
        let mut s = String::new();
        fs::File::open(path)
            .expect("open file")
            .read_to_string(&mut s)
            .expect("read file");
        s
    })
    .join()
    .expect("join reader");
    println!(
        "file: {} lines, {} bytes, last {:?}",
        text.lines().count(),
        text.len(),
        text.lines().last()
    );
    fs::remove_file(path).expect("remove file");
    println!("file exists after remove: {}", fs::metadata(path).is_ok());
}

/// Lists a directory in a worker thread; the names are sorted.
fn list_dir(dir: &'static str) {
    let names = thread::spawn(move || {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    })
    .join()
    .expect("join lister");
    println!("{dir}: {} entries", names.len());
    let shown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with('.'))
        .take(8)
        .collect();
    println!("{dir}: first {}", shown.join(" "));
    match fs::read_dir("/no/such/dir") {
        Ok(_) => println!("missing dir: opened?"),
        Err(e) => println!("missing dir: {:?}", e.kind()),
    }
}

fn main() {
    channel_sums();
    rendezvous();
    shared_state();
    file_round_trip();
    list_dir("/opt");
    list_dir("/bin");
    std::io::stdout().flush().expect("flush stdout");
    std::process::exit(4);
}
