//! The task runner: a durable queue in the tasks table.
//!
//! Use cases record tasks (status 0) with the state change they carry out; the runner picks
//! every unfinished task, marks it running (1), and executes its steps (see `steps`). Each step
//! checks the world before acting, so a task resumed after a crsd restart (status 1, `step` =
//! the last completed step) repeats nothing harmful. A task ends succeeded (2), failed (3:
//! undone, nothing changed) or in error (-1: an unexpected failure, e.g. a panic, or a task
//! that could not be undone).
//!
//! A failed task is undone, and from then on only undone (`tasks.undo_status`), also after a
//! restart. An undo can fail for as long as its cause lasts (a full data disk refuses the very
//! commit that ends the task): it is retried with doubling backoff (`retry_at`, durable; kept
//! in memory while the store refuses writes), and after a bounded number of attempts the task
//! is given up: it ends in error, releases its instance in a state that tells the truth, and
//! the log says what the operator must check. What a tenant sees of a failure (`error`) is a
//! summary; the detail stays in the log and in the operator's `detail` column.

use crate::Service;
use crsd_core::model::{Task, TaskKind, TaskStatus, TaskView};
use crsd_core::{Error, Field, Result};
use crsd_store::TaskFilter;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// The operator's failure detail kept per task (the newest part).
const MAX_DETAIL_BYTES: usize = 8192;

/// How a failed task's undo is retried: after `first`, doubling up to `max` between attempts;
/// after `attempts` failed attempts the task is given up.
#[derive(Debug, Clone)]
pub struct UndoRetry {
    pub attempts: i64,
    pub first: Duration,
    pub max: Duration,
}

impl Default for UndoRetry {
    fn default() -> UndoRetry {
        UndoRetry {
            attempts: 8,
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl UndoRetry {
    /// The wait after the `failed`-th failed attempt.
    pub fn backoff(&self, failed: i64) -> Duration {
        let doublings = failed.clamp(1, 31) as u32 - 1;
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(Duration::from_millis(1))
    }
}

/// The last `max` bytes of `s` (on a character boundary).
fn tail(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &s[cut..])
}

/// GetRedisTaskList, parsed.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub limit: i64,
    pub offset: i64,
    pub redis_id: Option<String>,
    pub redis_name: Option<String>,
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    pub statuses: Vec<i64>,
    pub kinds: Vec<TaskKind>,
}

impl Service {
    /// Tasks of every account for the operator (`crsd task list`): the unfinished ones
    /// (pending or running), oldest first, when `unfinished`; else the newest `limit`,
    /// newest first.
    pub async fn operator_tasks(&self, unfinished: bool, limit: i64) -> Result<Vec<Task>> {
        Ok(if unfinished {
            self.store.unfinished_tasks().await?
        } else {
            self.store.recent_tasks(limit).await?
        })
    }
}

impl Service {
    /// DescribeTaskInfo: the caller's task.
    pub async fn task_info(&self, app_id: i64, id: i64) -> Result<Task> {
        match self.store.task(id).await? {
            Some(t) if t.app_id == app_id => Ok(t),
            _ => Err(Error::TaskNotFound(id)),
        }
    }

    /// GetRedisTaskList.
    pub async fn task_list(&self, app_id: i64, q: TaskQuery) -> Result<(i64, Vec<TaskView>)> {
        crate::page::check(q.limit, q.offset)?;
        let begin = self.parse_time(Field::BeginTime, &q.begin_time)?;
        let end = self.parse_end_time(Field::EndTime, &q.end_time)?;
        for s in &q.statuses {
            if TaskStatus::from_code(*s).is_none() {
                return Err(Error::invalid(
                    "taskStatus",
                    format!("{s} is not 0, 1, 2, 3 or -1"),
                ));
            }
        }
        let filter = TaskFilter {
            app_id,
            instance_id: q.redis_id.filter(|s| !s.is_empty()),
            instance_name: q.redis_name.filter(|s| !s.is_empty()),
            begin,
            end,
            statuses: q.statuses,
            kinds: q.kinds,
            limit: q.limit,
            offset: q.offset,
        };
        Ok(self.store.list_tasks(&filter).await?)
    }

    /// Runs tasks until `shutdown` turns true. Unfinished tasks found at start are resumed;
    /// a task waiting out the backoff between undo attempts is left alone until its time.
    pub async fn run_tasks(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.task_concurrency.max(1)));
        let inflight: Arc<Mutex<HashSet<i64>>> = Arc::default();
        loop {
            match self.store.unfinished_tasks().await {
                Ok(tasks) => {
                    let now = self.now();
                    for stored in tasks {
                        let task = self.latest(stored);
                        if task.retry_at.is_some_and(|at| at > now) {
                            continue;
                        }
                        let fresh = inflight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(task.id);
                        if !fresh {
                            continue;
                        }
                        let svc = self.clone();
                        let permits = permits.clone();
                        let inflight = inflight.clone();
                        tokio::spawn(async move {
                            if let Ok(_permit) = permits.acquire_owned().await {
                                let id = task.id;
                                svc.run_one(task).await;
                                inflight
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(&id);
                            }
                        });
                    }
                }
                Err(e) => tracing::error!(error = ?e, "cannot read the task queue"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// The task as the runner last left it: a state the store could not record (it refused
    /// writes) is kept in memory and wins over the stored row.
    fn latest(&self, stored: Task) -> Task {
        self.unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stored.id)
            .cloned()
            .unwrap_or(stored)
    }

    /// Executes one task to its end (or to its next undo attempt), catching panics.
    async fn run_one(self: &Arc<Self>, mut task: Task) {
        if task.undo.is_some() {
            tracing::info!(
                task = task.id,
                kind = task.kind.name(),
                attempts = task.undo_attempts,
                "resuming the undo of a failed task"
            );
            self.undo_or_retry(task).await;
            return;
        }
        if task.status == TaskStatus::Pending {
            // Marked in the background: the mark only moves a pending task, so it cannot undo
            // an end the steps record first, and the first step need not wait for a commit.
            task.status = TaskStatus::Running;
            let svc = self.clone();
            let id = task.id;
            tokio::spawn(async move {
                let marked = async {
                    let mut tx = svc.store.write().await?;
                    tx.mark_task_running(id, svc.now()).await?;
                    tx.commit().await
                };
                if let Err(e) = marked.await {
                    tracing::warn!(task = id, error = ?e, "cannot mark the task running");
                }
            });
        } else {
            tracing::info!(
                task = task.id,
                kind = task.kind.name(),
                step = task.step,
                "resuming task"
            );
        }
        let svc = self.clone();
        let t = task.clone();
        let outcome = tokio::spawn(async move {
            let _processes = svc.hold_processes(&t).await;
            svc.execute(t).await
        })
        .await;
        let (status, error) = match outcome {
            Ok(Ok(())) => {
                self.forget_unsaved(task.id);
                return;
            }
            Ok(Err(e)) => (TaskStatus::Failed, e),
            Err(join) => (
                TaskStatus::Error,
                Error::internal(format!("task panicked: {join}")),
            ),
        };
        tracing::warn!(task = task.id, kind = task.kind.name(), error = ?error, "task failed; undoing");
        // Reload: the steps may have recorded progress.
        let mut task = match self.store.task(task.id).await {
            Ok(Some(t)) => t,
            _ => task,
        };
        // From now on the task is undone, never run again, also after a restart.
        task.undo = Some(status);
        task.error = Some(error.public_message());
        task.detail = Some(format!("{error:?}"));
        self.keep(&task).await;
        self.undo_or_retry(task).await;
    }

    /// One undo attempt of a failed task. A failed attempt is recorded with the time of the
    /// next one (doubling backoff); after `undo_retry.attempts` failed attempts the task is
    /// given up (see [`Service::give_up`]), which is retried the same way until it lands.
    async fn undo_or_retry(&self, mut task: Task) {
        let status = task.undo.unwrap_or(TaskStatus::Failed);
        let policy = &self.cfg.undo_retry;
        let giving_up = task.undo_attempts >= policy.attempts;
        let _processes = self.hold_processes(&task).await;
        let result = if giving_up {
            self.give_up(&task).await
        } else {
            self.undo(&task, status, false).await
        };
        let Err(e) = result else {
            self.forget_unsaved(task.id);
            return;
        };
        task.undo_attempts += 1;
        let wait = policy.backoff(task.undo_attempts);
        task.retry_at = Some(self.now() + chrono::Duration::from_std(wait).unwrap_or_default());
        let mut detail = task.detail.take().unwrap_or_default();
        detail.push_str(&format!(
            "; undo attempt {} failed: {e:?}",
            task.undo_attempts
        ));
        task.detail = Some(tail(detail, MAX_DETAIL_BYTES));
        if giving_up {
            tracing::error!(
                task = task.id, kind = task.kind.name(), error = ?e, retry_in = ?wait,
                "cannot record that a failed task was given up (does the metadata store take writes? is the data disk full?)"
            );
        } else {
            tracing::error!(
                task = task.id, kind = task.kind.name(), attempt = task.undo_attempts,
                of = policy.attempts, error = ?e, retry_in = ?wait,
                "undo of a failed task failed; retrying"
            );
        }
        self.keep(&task).await;
    }

    /// Records the task's state; when the store refuses, keeps it in memory (the runner reads
    /// it from there) so that the backoff and the undo still hold until the store heals.
    async fn keep(&self, task: &Task) {
        match self.save_task(task).await {
            Ok(()) => self.forget_unsaved(task.id),
            Err(e) => {
                tracing::error!(task = task.id, error = ?e, "cannot record the task's state; kept in memory meanwhile");
                self.unsaved
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(task.id, task.clone());
            }
        }
    }

    fn forget_unsaved(&self, id: i64) {
        self.unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub(crate) async fn save_task(&self, task: &Task) -> Result<()> {
        let mut t = task.clone();
        t.updated_at = self.now();
        let mut tx = self.store.write().await?;
        tx.update_task(&t).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `step` is done (steps before it are not repeated when the task resumes).
    pub(crate) async fn step_done(&self, task: &mut Task, step: i64) -> Result<()> {
        task.step = step;
        self.save_task(task).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = UndoRetry {
            attempts: 5,
            first: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (1..=6).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(r.backoff(1000), Duration::from_secs(10));
    }

    #[test]
    fn detail_keeps_its_newest_part() {
        let s = "é".repeat(10);
        let t = tail(s, 5);
        assert!(t.ends_with("éé") && t.len() <= 5 + "…".len() + 1);
    }
}
