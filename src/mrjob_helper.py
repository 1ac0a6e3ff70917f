"""tormr's mrjob helper: describe an mrjob script's steps as JSON.

mrjob 0.7 has no --steps switch; its own runners ask the job class
in-process. This does the same: load SCRIPT, instantiate its job class with
ARGS, and print what a runner would be given (steps, jobconf, partitioner,
SORT_VALUES, files to ship, pass-through arguments).

usage: python3 -c "$(this file)" SCRIPT [ARGS...]
"""
import inspect
import importlib.util
import json
import os
import sys
import tarfile
import tempfile
import zipfile


def fail(message):
    sys.stderr.write("tormr-mrjob: %s\n" % message)
    sys.exit(2)


def load_job_class(script):
    try:
        from mrjob.job import MRJob
    except ImportError:
        fail("mrjob is not installed for %s; install it with: %s -m pip install mrjob"
             % (sys.executable, sys.executable))
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    spec = importlib.util.spec_from_file_location("tormr_mrjob_script", script)
    if spec is None or spec.loader is None:
        fail("%s is not a Python file" % script)
    module = importlib.util.module_from_spec(spec)
    # mrjob finds the script's folder through the module registry.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's script failed to import
        fail("loading %s failed: %s: %s" % (script, type(e).__name__, e))
    classes = [c for c in vars(module).values()
               if inspect.isclass(c) and issubclass(c, MRJob) and c is not MRJob
               and c.__module__ == module.__name__]
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    if len(leaves) != 1:
        fail("%s must define exactly one MRJob class to run (found: %s)"
             % (script, ", ".join(c.__name__ for c in leaves) or "none"))
    return leaves[0]


def shipped(kind, spec):
    from mrjob.setup import parse_legacy_hash_path
    d = parse_legacy_hash_path(kind, spec)
    path = os.path.abspath(os.path.expanduser(os.path.expandvars(d["path"])))
    return {"path": path, "name": d.get("name") or os.path.basename(path.rstrip("/"))}


def walk(root, name):
    out = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root)
            out.append({"path": full, "name": name + "/" + rel})
    return sorted(out, key=lambda x: x["name"])


def unpack(archive, name):
    # Unpacked beside the job's state, so tormr removes it with the job.
    base = os.environ.get("TORMR_ARCHIVE_DIR") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    dest = tempfile.mkdtemp(prefix="archive-", dir=base)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    else:
        fail("archive %s is neither a tar nor a zip file" % archive)
    return walk(dest, name)


def main():
    if len(sys.argv) < 2:
        fail("usage: helper SCRIPT [ARGS...]")
    script = sys.argv[1]
    cls = load_job_class(script)
    try:
        job = cls(sys.argv[2:])
        kw = job._runner_kwargs()
        steps = job._steps_desc()
    except SystemExit:
        fail("the script rejected its arguments: %s" % " ".join(sys.argv[2:]))
    except Exception as e:  # mrjob reports bad options and steps as exceptions
        fail("%s: %s: %s" % (script, type(e).__name__, e))
    extra = []
    for a in kw.get("extra_args") or []:
        if isinstance(a, dict):
            extra.append(shipped("file", a["path"] + ("#" + a["name"] if a.get("name") else "")))
        else:
            extra.append(a)
    files = [shipped("file", f) for f in kw.get("upload_files") or []]
    for d in kw.get("upload_dirs") or []:
        s = shipped("dir", d)
        files.extend(walk(s["path"], s["name"]))
    for a in kw.get("upload_archives") or []:
        s = shipped("archive", a)
        files.extend(unpack(s["path"], s["name"]))
    json.dump({
        "steps": steps,
        "jobconf": kw.get("jobconf") or {},
        "partitioner": kw.get("partitioner"),
        "sort_values": bool(kw.get("sort_values")),
        "extra_args": extra,
        "files": files,
        "hadoop_input_format": kw.get("hadoop_input_format"),
        "hadoop_output_format": kw.get("hadoop_output_format"),
        "libjars": kw.get("libjars") or [],
    }, sys.stdout)


main()
