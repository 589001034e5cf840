"""The house rules that keep the notebooks readable in order: every module imports only from modules of lower-numbered
notebooks (no import circles, nothing read before it is explained), and every module stays small."""
import ast, re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / 'vqba_nb'
MODULES = sorted(p for p in PKG.glob('*.py') if not p.name.startswith('_'))


def notebook_of(path: Path) -> str:
    "The notebook a module is exported from, as nbdev's header names it."
    m = re.search(r'File to edit: \.\./nbs/(\S+\.ipynb)', path.read_text())
    assert m, f'{path.name} has no nbdev header: is it hand-written?'
    return m.group(1)


def package_imports(path: Path) -> set[str]:
    "Names of the package's modules that `path` imports, at the top or inside functions."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split('.')[0])            # from .x import y
            elif node.level == 1: out |= {a.name for a in node.names}                          # from . import x
            elif node.module and node.module.startswith('vqba_nb.'): out.add(node.module.split('.')[1])
            elif node.module == 'vqba_nb': out |= {a.name for a in node.names if (PKG / f'{a.name}.py').is_file()}
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('vqba_nb.')}
    return out


def test_modules_import_only_from_lower_numbered_notebooks():
    nb = {p.stem: notebook_of(p) for p in MODULES}
    wrong = [f'{p.stem} ({nb[p.stem]}) imports {m} ({nb[m]})' for p in MODULES for m in sorted(package_imports(p))
             if m in nb and nb[m] >= nb[p.stem]]
    assert not wrong, 'imports against the notebook order:\n' + '\n'.join(wrong)


def test_the_import_reader_sees_every_form():
    src = ('from .a import x\nfrom . import b\nfrom vqba_nb.c import y\nimport vqba_nb.d\n'
           'def f():\n    from vqba_nb.e import z\n')
    tmp = PKG.parent / 'tests' / '_imports_probe.txt'
    tmp.write_text(src)
    try: assert package_imports(tmp) == {'a', 'b', 'c', 'd', 'e'}
    finally: tmp.unlink()


def test_modules_stay_small():
    big = {p.name: n for p in MODULES if (n := len(p.read_text().splitlines())) > 420}
    assert not big, f'modules over ~400 lines (split the notebook): {big}'


def untested_before_next_export(nb_path: Path) -> list[str]:
    "Public names an exported cell defines that no code cell mentions before the next exported cell."
    import json
    cells = [''.join(c['source']) for c in json.loads(nb_path.read_text())['cells'] if c['cell_type'] == 'code']
    missing = []
    for i, src in enumerate(cells):
        if not src.startswith('#| export') or 'import' in src.split('\n', 2)[1]: continue
        tree = ast.parse(src)
        names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        names += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        after = []
        for s in cells[i + 1:]:
            if s.startswith('#| export'): break
            after.append(s)
        missing += [n for n in names if not n.startswith('_') and not any(re.search(rf'\b{n}\b', s) for s in after)]
    return missing


def test_every_notebook_tests_each_name_before_the_next_export():
    missing = {p.name: m for p in sorted((PKG.parent / 'nbs').glob('[0-9]*.ipynb')) if (m := untested_before_next_export(p))}
    assert not missing, f'public names with no test before the next exported cell: {missing}'


def test_the_export_checker_sees_an_untested_name(tmp_path):
    import json
    cells = ['#| export\ndef tested(): pass\ndef untested(): pass\nLIMIT = 3', 'assert tested() is None', '#| export\ndef later(): pass',
             'later()']
    nb = tmp_path / 'x.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': c} for c in cells]}))
    assert untested_before_next_export(nb) == ['untested', 'LIMIT']
