//! Client commands: turn parsed arguments into API requests and print the answers.

use super::output;
use super::rollout::{self, Progress};
use super::{
    Command, DeleteArgs, ImageCommand, LabelArgs, NodeCommand, OutputFormat, RolloutCommand,
    ScaleArgs, TokenCommand,
};
use crate::api::client::{Client, ClientError};
use crate::api::{ApplyFile, DeleteTarget, Request, ResourceKind, Response};
use std::path::{Path, PathBuf};

/// Exit codes of the CLI contract.
pub const EXIT_OK: i32 = 0;
pub const EXIT_USER_ERROR: i32 = 1;
pub const EXIT_UNREACHABLE: i32 = 2;

/// Runs a client command against the agent at `socket`; returns the exit code.
pub fn run(socket: &Path, command: Command) -> i32 {
    match run_inner(socket, command) {
        Ok(code) => code,
        Err(CliError::User(message)) => {
            output::error(&message);
            EXIT_USER_ERROR
        }
        Err(CliError::Client(e)) => {
            output::error(&e.to_string());
            EXIT_UNREACHABLE
        }
    }
}

enum CliError {
    User(String),
    Client(ClientError),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

fn kind_of(word: &str) -> Result<ResourceKind, CliError> {
    ResourceKind::parse(word).ok_or_else(|| {
        CliError::User(format!(
            "unknown resource type {word:?}: use pods, deployments, daemonsets, nodes, services, endpoints, events, namespaces, configmaps or secrets"
        ))
    })
}

/// Sends one request and returns the value of an `Ok` answer.
fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, CliError> {
    match Client::call(socket, request)? {
        Response::Ok { value } => Ok(value),
        Response::Error { message } => Err(CliError::User(message)),
        other => Err(CliError::User(format!("unexpected answer {other:?}"))),
    }
}

fn run_inner(socket: &Path, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Get(args) => {
            let kind = kind_of(&args.kind)?;
            let value = call(
                socket,
                &Request::Get {
                    kind,
                    name: args.name.clone(),
                    namespace: args.namespace.clone(),
                    all_namespaces: args.all_namespaces,
                },
            )?;
            output::print_get(kind, &value, args.output, args.all_namespaces);
            Ok(EXIT_OK)
        }
        Command::Describe(args) => {
            let kind = kind_of(&args.kind)?;
            let value = call(
                socket,
                &Request::Describe {
                    kind,
                    name: args.name,
                    namespace: args.namespace,
                },
            )?;
            output::print_describe(&value);
            Ok(EXIT_OK)
        }
        Command::Logs(args) => {
            let pod = match args.pod.split_once('/') {
                Some(("job" | "jobs", job)) => job_pod(socket, job, args.namespace.as_deref())?,
                Some(("pod" | "pods" | "po", pod)) => pod.to_string(),
                Some((other, _)) => {
                    return Err(CliError::User(format!(
                        "logs of {other}/NAME: give a pod name, pod/NAME or job/NAME"
                    )));
                }
                None => args.pod,
            };
            let mut client = Client::send(
                socket,
                &Request::Logs {
                    pod,
                    namespace: args.namespace,
                    container: args.container,
                    follow: args.follow,
                    tail: args.tail,
                },
            )?;
            while let Some(response) = client.next_response()? {
                match response {
                    Response::LogLine { text } => output::log_line(&text),
                    Response::End => break,
                    Response::Error { message } => return Err(CliError::User(message)),
                    Response::Ok { .. }
                    | Response::Stdout { .. }
                    | Response::Stderr { .. }
                    | Response::Exit { .. } => {}
                }
            }
            Ok(EXIT_OK)
        }
        Command::Exec(args) => match super::exec::exec(socket, args) {
            Ok(code) => Ok(code),
            Err(super::exec::ExecError::User(m)) => Err(CliError::User(m)),
            Err(super::exec::ExecError::Client(e)) => Err(CliError::Client(e)),
        },
        Command::Apply(args) => {
            let files = read_manifest_args(&args.files)?;
            let request = Request::Apply {
                files: files.clone(),
                dry_run: args.dry_run,
            };
            match Client::call(socket, &request) {
                Ok(Response::Ok { value }) => {
                    output::print_changes(&value);
                    Ok(EXIT_OK)
                }
                Ok(Response::Error { message }) => Err(CliError::User(message)),
                Ok(other) => Err(CliError::User(format!("unexpected answer {other:?}"))),
                // Validation needs no agent: a dry run still checks the files locally (not
                // node ports against a range: the agent's own is not known here).
                Err(ClientError::Connect { .. }) if args.dry_run => {
                    let checked = crate::desired::check_files(
                        files
                            .iter()
                            .map(|f| (f.name.as_str(), f.content.as_bytes())),
                        None,
                    );
                    match checked {
                        Ok((_, warnings)) => {
                            for w in warnings {
                                eprintln!("warning: {w}");
                            }
                            output::note(
                                "valid (agent not reachable: cannot show what would change, nor check node ports against its --service-node-port-range)",
                            );
                            Ok(EXIT_OK)
                        }
                        Err(message) => Err(CliError::User(message)),
                    }
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Delete(args) => {
            let target = delete_target(args)?;
            let value = call(socket, &Request::Delete { target })?;
            output::print_changes(&value);
            Ok(EXIT_OK)
        }
        Command::Status => {
            let value = call(socket, &Request::Status)?;
            output::print_status(&value);
            Ok(EXIT_OK)
        }
        Command::Image(ImageCommand::Import { file }) => {
            let path = std::fs::canonicalize(&file)
                .map_err(|e| CliError::User(format!("image import {}: {e}", file.display())))?;
            let value = call(
                socket,
                &Request::ImageImport {
                    path: path.display().to_string(),
                },
            )?;
            output::print_images(&value);
            Ok(EXIT_OK)
        }
        Command::Image(ImageCommand::Pull { reference }) => {
            let value = call(socket, &Request::ImagePull { reference })?;
            output::print_images(&value);
            Ok(EXIT_OK)
        }
        Command::Image(ImageCommand::Ls) => {
            let value = call(socket, &Request::ImageList)?;
            output::print_images(&value);
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::Create { ttl }) => {
            let value = call(
                socket,
                &Request::TokenCreate {
                    ttl_secs: ttl.as_secs(),
                },
            )?;
            output::note(value["token"].as_str().unwrap_or_default());
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::List) => {
            let value = call(socket, &Request::TokenList)?;
            output::print_tokens(&value);
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            call(socket, &Request::TokenRevoke { id: id.clone() })?;
            output::note(&format!("token {id} revoked"));
            Ok(EXIT_OK)
        }
        Command::Node(NodeCommand::Remove { name, force }) => {
            call(
                socket,
                &Request::RemoveNode {
                    name: name.clone(),
                    force,
                },
            )?;
            output::note(&format!(
                "node/{name} removed: every node forgets it and the name can join again"
            ));
            Ok(EXIT_OK)
        }
        Command::Label(args) => {
            let request = label_request(args)?;
            let value = call(socket, &request)?;
            output::note(&format!(
                "node/{} labeled",
                value["name"].as_str().unwrap_or_default()
            ));
            Ok(EXIT_OK)
        }
        Command::Taint(args) => {
            if kind_of(&args.kind)? != ResourceKind::Nodes {
                return Err(CliError::User(
                    "only nodes can be tainted: skiff taint node NAME KEY[=VALUE]:EFFECT... [KEY-]"
                        .into(),
                ));
            }
            let value = call(
                socket,
                &Request::TaintNode {
                    node: args.name,
                    changes: args.changes,
                },
            )?;
            output::note(&format!(
                "node/{} tainted",
                value["name"].as_str().unwrap_or_default()
            ));
            Ok(EXIT_OK)
        }
        Command::Cordon { node } => {
            set_scheduling(socket, &node, true, false)?;
            output::note(&format!("node/{node} cordoned"));
            Ok(EXIT_OK)
        }
        Command::Uncordon { node } => {
            set_scheduling(socket, &node, false, false)?;
            output::note(&format!("node/{node} uncordoned"));
            Ok(EXIT_OK)
        }
        Command::Drain { node, timeout } => {
            set_scheduling(socket, &node, true, true)?;
            output::note(&format!("node/{node} cordoned, moving its pods"));
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let status = call(socket, &Request::Status)?;
                let left = status["nodes"]
                    .as_array()
                    .and_then(|nodes| nodes.iter().find(|n| n["name"] == node.as_str()))
                    .and_then(|n| n["pods"].as_u64())
                    .unwrap_or(0);
                if left == 0 {
                    output::note(&format!("node/{node} drained"));
                    return Ok(EXIT_OK);
                }
                if std::time::Instant::now() >= deadline {
                    return Err(CliError::User(format!(
                        "node/{node}: {left} pod(s) still there after {}; the drain goes on \
                         (check `skiff status`)",
                        humantime::format_duration(timeout)
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        Command::Rollout(RolloutCommand::Status {
            target,
            name,
            namespace,
            timeout,
            watch,
        }) => rollout_status(socket, &target, name.as_deref(), namespace, timeout, watch),
        Command::Rollout(RolloutCommand::Restart {
            target,
            name,
            namespace,
        }) => rollout_restart(socket, &target, name.as_deref(), namespace),
        Command::Rollout(RolloutCommand::Pause {
            target,
            name,
            namespace,
        }) => rollout_pause(socket, &target, name.as_deref(), namespace, true),
        Command::Rollout(RolloutCommand::Resume {
            target,
            name,
            namespace,
        }) => rollout_pause(socket, &target, name.as_deref(), namespace, false),
        Command::Rollout(RolloutCommand::History {
            target,
            name,
            namespace,
            revision,
        }) => rollout_history(socket, &target, name.as_deref(), namespace, revision),
        Command::Rollout(RolloutCommand::Undo {
            target,
            name,
            namespace,
            to_revision,
        }) => rollout_undo(socket, &target, name.as_deref(), namespace, to_revision),
        Command::Scale(args) => scale(socket, args),
        Command::Create(super::CreateCommand::Job {
            name,
            from,
            namespace,
        }) => create_job(socket, &name, &from, namespace),
        Command::Agent(_) | Command::Dev(_) => Err(CliError::User("not a client command".into())),
    }
}

/// `create job NAME --from=cronjob/CRON`: a Job with the CronJob's job template, applied
/// through the API (so `delete job NAME` removes it), annotated as made by hand as kubectl
/// does.
fn create_job(
    socket: &Path,
    name: &str,
    from: &str,
    namespace: Option<String>,
) -> Result<i32, CliError> {
    let cron = match from.split_once('/') {
        Some(("cronjob" | "cronjobs" | "cj", cron)) if !cron.is_empty() => cron,
        _ => {
            return Err(CliError::User(format!(
                "--from must be cronjob/NAME (got {from:?})"
            )));
        }
    };
    let value = call(
        socket,
        &Request::Get {
            kind: ResourceKind::CronJobs,
            name: Some(cron.to_string()),
            namespace: namespace.clone(),
            all_namespaces: false,
        },
    )?;
    let template = value
        .pointer("/spec/jobTemplate")
        .cloned()
        .ok_or_else(|| CliError::User(format!("cronjob {cron:?} has no job template")))?;
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    annotations["cronjob.kubernetes.io/instantiate"] = serde_json::json!("manual");
    let job = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": value.pointer("/metadata/namespace").cloned()
                .unwrap_or_else(|| serde_json::json!("default")),
            "labels": template.pointer("/metadata/labels").cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            "annotations": annotations,
        },
        "spec": template.get("spec").cloned().unwrap_or_default(),
    });
    let request = Request::Apply {
        files: vec![crate::api::ApplyFile {
            name: format!("job/{name} (from cronjob/{cron})"),
            content: job.to_string(),
        }],
        dry_run: false,
    };
    match Client::call(socket, &request) {
        Ok(Response::Ok { value }) => {
            output::print_changes(&value);
            Ok(EXIT_OK)
        }
        Ok(Response::Error { message }) => Err(CliError::User(message)),
        Ok(other) => Err(CliError::User(format!("unexpected answer: {other:?}"))),
        Err(e) => Err(CliError::Client(e)),
    }
}

/// The Deployment `name` as `get deployments NAME -o json` shows it.
fn get_deployment(
    socket: &Path,
    name: &str,
    namespace: &Option<String>,
) -> Result<serde_json::Value, CliError> {
    let value = call(
        socket,
        &Request::Get {
            kind: ResourceKind::Deployments,
            name: Some(name.to_string()),
            namespace: namespace.clone(),
            all_namespaces: false,
        },
    )?;
    rollout::the_item(&value)
        .cloned()
        .ok_or_else(|| CliError::User(format!("deployment {name:?} not found")))
}

/// The pod `logs job/NAME` reads, as kubectl picks it: the Job's newest pod.
fn job_pod(socket: &Path, job: &str, namespace: Option<&str>) -> Result<String, CliError> {
    let value = call(
        socket,
        &Request::Get {
            kind: ResourceKind::Pods,
            name: None,
            namespace: namespace.map(str::to_string),
            all_namespaces: false,
        },
    )?;
    let items = value
        .get("items")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter(|p| {
            p.pointer("/metadata/labels")
                .and_then(|l| l.get(skiff_manifests::JOB_NAME_LABEL))
                .and_then(serde_json::Value::as_str)
                == Some(job)
        })
        .max_by_key(|p| {
            p.pointer("/metadata/creationTimestamp")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .and_then(|p| {
            p.pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
        })
        .map(str::to_string)
        .ok_or_else(|| CliError::User(format!("job {job:?} has no pods (or does not exist)")))
}

fn deployment_target(target: &str, name: Option<&str>, verb: &str) -> Result<String, CliError> {
    let (kind, name) = rollout::parse_target(target, name).map_err(CliError::User)?;
    match kind.as_str() {
        "deployment" => Ok(name),
        "daemonset" => Err(CliError::User(format!(
            "daemonset/{name} cannot be {verb}: a DaemonSet runs one pod on every matching node"
        ))),
        _ => Err(CliError::User(format!(
            "{kind}/{name} cannot be {verb}: only Deployments can"
        ))),
    }
}

/// `rollout status`: prints each new stage until the rollout is done; fails once the node
/// reports the Deployment's progress deadline exceeded, or after `timeout`.
fn rollout_status(
    socket: &Path,
    target: &str,
    name: Option<&str>,
    namespace: Option<String>,
    timeout: Option<std::time::Duration>,
    watch: bool,
) -> Result<i32, CliError> {
    let name = deployment_target(target, name, "rolled out")?;
    let started = std::time::Instant::now();
    let mut last: Option<String> = None;
    loop {
        let d = get_deployment(socket, &name, &namespace)?;
        let message = match rollout::progress(&d) {
            Progress::Done(message) => {
                output::note(&message);
                return Ok(EXIT_OK);
            }
            Progress::Failed(message) => return Err(CliError::User(message)),
            Progress::Waiting(message) => message,
        };
        if last.as_ref() != Some(&message) {
            output::note(&message);
            last = Some(message);
        }
        if !watch {
            return Ok(EXIT_OK);
        }
        if let Some(limit) = timeout
            && started.elapsed() >= limit
        {
            return Err(CliError::User(format!(
                "timed out waiting for the rollout of deployment {name:?} ({})",
                humantime::format_duration(limit)
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `deployment/NAME` or `daemonset/NAME`: the API's kind, the kind as written and the name;
/// any other kind is refused as `KIND/NAME <refused>`.
fn templated_target(
    target: &str,
    name: Option<&str>,
    refused: &str,
) -> Result<(ResourceKind, String, String), CliError> {
    let (kind, name) = rollout::parse_target(target, name).map_err(CliError::User)?;
    let resource = match kind.as_str() {
        "deployment" => ResourceKind::Deployments,
        "daemonset" => ResourceKind::DaemonSets,
        _ => return Err(CliError::User(format!("{kind}/{name} {refused}"))),
    };
    Ok((resource, kind, name))
}

const NO_HISTORY: &str = "has no rollout history: only Deployments and DaemonSets do";

/// `rollout history KIND/NAME [--revision N]`.
fn rollout_history(
    socket: &Path,
    target: &str,
    name: Option<&str>,
    namespace: Option<String>,
    revision: Option<u64>,
) -> Result<i32, CliError> {
    let (kind, _, name) = templated_target(target, name, NO_HISTORY)?;
    let value = call(
        socket,
        &Request::RolloutHistory {
            kind,
            name,
            namespace,
        },
    )?;
    output::print_history(&value, revision).map_err(CliError::User)?;
    Ok(EXIT_OK)
}

/// `rollout undo KIND/NAME [--to-revision N]`.
fn rollout_undo(
    socket: &Path,
    target: &str,
    name: Option<&str>,
    namespace: Option<String>,
    to_revision: Option<u64>,
) -> Result<i32, CliError> {
    let (kind, _, name) = templated_target(target, name, NO_HISTORY)?;
    let value = call(
        socket,
        &Request::RolloutUndo {
            kind,
            name,
            namespace,
            to_revision,
        },
    )?;
    output::print_undo(&value);
    Ok(EXIT_OK)
}

/// `rollout restart deployment/NAME` (or a DaemonSet): applies it with a new restartedAt
/// template annotation, so its pods are replaced as its update strategy says.
fn rollout_restart(
    socket: &Path,
    target: &str,
    name: Option<&str>,
    namespace: Option<String>,
) -> Result<i32, CliError> {
    let (resource, kind, name) = templated_target(
        target,
        name,
        "cannot be restarted: only Deployments and DaemonSets can",
    )?;
    let value = call(
        socket,
        &Request::Get {
            kind: resource,
            name: Some(name.clone()),
            namespace: namespace.clone(),
            all_namespaces: false,
        },
    )?;
    let object = rollout::the_item(&value)
        .cloned()
        .ok_or_else(|| CliError::User(format!("{kind} {name:?} not found")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let manifest = rollout::restarted_manifest(&object, &crate::pod::rfc3339(now));
    call(
        socket,
        &Request::Apply {
            files: vec![ApplyFile {
                name: format!("rollout restart {kind}/{name}"),
                content: manifest.to_string(),
            }],
            dry_run: false,
        },
    )?;
    output::note(&format!("{kind}.apps/{name} restarted"));
    Ok(EXIT_OK)
}

/// `rollout pause|resume deployment/NAME`: applies the Deployment with `spec.paused` set or
/// cleared.
fn rollout_pause(
    socket: &Path,
    target: &str,
    name: Option<&str>,
    namespace: Option<String>,
    paused: bool,
) -> Result<i32, CliError> {
    let verb = if paused { "paused" } else { "resumed" };
    let name = deployment_target(target, name, verb)?;
    let d = get_deployment(socket, &name, &namespace)?;
    if d.pointer("/spec/paused")
        .and_then(serde_json::Value::as_bool)
        == Some(paused)
    {
        output::note(&format!("deployment.apps/{name} is already {verb}"));
        return Ok(EXIT_OK);
    }
    let request = Request::Apply {
        files: vec![ApplyFile {
            name: format!(
                "rollout {} deployment/{name}",
                if paused { "pause" } else { "resume" }
            ),
            content: rollout::paused_manifest(&d, paused).to_string(),
        }],
        dry_run: false,
    };
    call(socket, &request)?;
    output::note(&format!("deployment.apps/{name} {verb}"));
    Ok(EXIT_OK)
}

/// `scale deployment/NAME --replicas N`: applies the Deployment with the new count.
fn scale(socket: &Path, args: ScaleArgs) -> Result<i32, CliError> {
    let name = deployment_target(&args.target, args.name.as_deref(), "scaled")?;
    let d = get_deployment(socket, &name, &args.namespace)?;
    let manifest = rollout::scaled_manifest(&d, args.replicas);
    let request = Request::Apply {
        files: vec![ApplyFile {
            name: format!("scale deployment/{name}"),
            content: manifest.to_string(),
        }],
        dry_run: false,
    };
    call(socket, &request)?;
    output::note(&format!("deployment.apps/{name} scaled"));
    Ok(EXIT_OK)
}

fn set_scheduling(
    socket: &Path,
    node: &str,
    cordoned: bool,
    draining: bool,
) -> Result<(), CliError> {
    call(
        socket,
        &Request::SetScheduling {
            node: node.to_string(),
            cordoned,
            draining,
        },
    )
    .map(|_| ())
}

fn delete_target(args: DeleteArgs) -> Result<DeleteTarget, CliError> {
    match (args.files.is_empty(), args.target.as_slice()) {
        (false, []) => Ok(DeleteTarget::Files {
            files: read_manifest_args(&args.files)?,
        }),
        (true, [kind, name]) => {
            let kind = kind_of(kind)?;
            if kind.manifest_kind().is_none() {
                return Err(CliError::User(format!(
                    "{} cannot be deleted",
                    args.target[0]
                )));
            }
            Ok(DeleteTarget::Object {
                kind,
                name: name.clone(),
                namespace: args.namespace,
            })
        }
        _ => Err(CliError::User(
            "usage: skiff delete -f FILE | skiff delete KIND NAME [-n NS]".to_string(),
        )),
    }
}

/// `label node NAME KEY=VALUE... KEY-...` as a request (keys and values are checked by the agent).
fn label_request(args: LabelArgs) -> Result<Request, CliError> {
    if kind_of(&args.kind)? != ResourceKind::Nodes {
        return Err(CliError::User(
            "only nodes can be labelled here: skiff label node NAME KEY=VALUE... [KEY-]".into(),
        ));
    }
    let mut set = std::collections::BTreeMap::new();
    let mut remove = Vec::new();
    for change in &args.changes {
        if let Some((key, value)) = change.split_once('=') {
            set.insert(key.to_string(), value.to_string());
        } else if let Some(key) = change.strip_suffix('-') {
            remove.push(key.to_string());
        } else {
            return Err(CliError::User(format!(
                "{change:?} is neither KEY=VALUE nor KEY-"
            )));
        }
    }
    Ok(Request::LabelNode {
        node: args.name,
        set,
        remove,
        overwrite: args.overwrite,
    })
}

/// Reads `-f` arguments: files as given, directories' manifest files in name order. The same
/// rules as the watched directory: regular files only, at most 1 MiB each.
fn read_manifest_args(paths: &[PathBuf]) -> Result<Vec<ApplyFile>, CliError> {
    let mut out = Vec::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            crate::watcher::list(path)
                .map_err(|e| CliError::User(format!("{}: {e}", path.display())))?
                .into_iter()
                .collect()
        } else {
            vec![path.clone()]
        };
        for file in files {
            let max = skiff_manifests::MAX_FILE_BYTES as u64;
            let bytes = match crate::watcher::read_manifest(&file, max, None) {
                crate::watcher::Look::Content(bytes, _, _) => bytes,
                crate::watcher::Look::Gone => {
                    return Err(CliError::User(format!("{}: no such file", file.display())));
                }
                crate::watcher::Look::Unusable(why) => {
                    return Err(CliError::User(format!("{}: {why}", file.display())));
                }
                crate::watcher::Look::Unchanged => unreachable!("no fingerprint was given"),
            };
            let content = String::from_utf8(bytes).map_err(|e| {
                CliError::User(format!(
                    "{}: file is not valid UTF-8 (bad byte at offset {})",
                    file.display(),
                    e.utf8_error().valid_up_to()
                ))
            })?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string());
            out.push(ApplyFile { name, content });
        }
    }
    if out.is_empty() {
        return Err(CliError::User("no manifest files found".into()));
    }
    Ok(out)
}

/// `-o` as the output module wants it.
pub fn wide(format: Option<OutputFormat>) -> bool {
    format == Some(OutputFormat::Wide)
}
