//! The task runner: a durable queue in the tasks table.
//!
//! Use cases record tasks (status 0) with the state change they carry out; the runner picks
//! every unfinished task, marks it running (1), and executes its steps (see `steps`). Each step
//! checks the world before acting, so a task resumed after a crsd restart (status 1, `step` =
//! the last completed step) repeats nothing harmful. A task ends succeeded (2), failed (3:
//! undone, nothing changed) or in error (-1: an unexpected failure, e.g. a panic).

use crate::Service;
use crsd_core::model::{Task, TaskKind, TaskStatus, TaskView};
use crsd_core::{Error, Result};
use crsd_store::TaskFilter;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

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
        let begin = self.parse_time("beginTime", &q.begin_time)?;
        let end = self.parse_end_time("endTime", &q.end_time)?;
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

    /// Runs tasks until `shutdown` turns true. Unfinished tasks found at start are resumed.
    pub async fn run_tasks(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.task_concurrency.max(1)));
        let inflight: Arc<Mutex<HashSet<i64>>> = Arc::default();
        loop {
            match self.store.unfinished_tasks().await {
                Ok(tasks) => {
                    for task in tasks {
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

    /// Executes one task to its end, catching panics.
    async fn run_one(self: &Arc<Self>, mut task: Task) {
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
        let outcome = tokio::spawn(async move { svc.execute(t).await }).await;
        let failure = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => (TaskStatus::Failed, e),
            Err(join) => (
                TaskStatus::Error,
                Error::internal(format!("task panicked: {join}")),
            ),
        };
        let (status, error) = failure;
        tracing::warn!(task = task.id, kind = task.kind.name(), error = ?error, "task failed; undoing");
        // Reload: the steps may have recorded progress.
        let task = match self.store.task(task.id).await {
            Ok(Some(t)) => t,
            _ => task,
        };
        if let Err(e) = self.undo(&task, status, &error).await {
            tracing::error!(task = task.id, error = ?e, "undo failed");
            let mut t = task.clone();
            t.status = TaskStatus::Error;
            t.error = Some(format!("{error:?}; undo failed: {e:?}"));
            let _ = self.save_task(&t).await;
        }
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
