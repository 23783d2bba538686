"""Tests of the package's layout: imports flow one way, modules stay small.

Read from the source with `ast`, so the test also
sees imports inside functions: a function-local import is still an import.
"""

import ast
import importlib
import os
import re
import subprocess
import sys

import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGE = 'tfp_vae'
_MAX_LINES = 500
# A module may pass _MAX_LINES only if its docstring says which one concept
# needs the length, in a sentence starting with this.
_LONG_MODULE_MARK = 'Longer than 500 lines:'


def _modules():
  """{module name: path} of every module of the package."""
  modules = {}
  for directory, _, files in os.walk(os.path.join(_ROOT, _PACKAGE)):
    for file in files:
      if not file.endswith('.py'):
        continue
      path = os.path.join(directory, file)
      parts = os.path.relpath(path, _ROOT)[:-len('.py')].split(os.sep)
      if parts[-1] == '__init__':
        parts = parts[:-1]
      modules['.'.join(parts)] = path
  return modules


def _imported_names(tree, module, is_package, modules=()):
  """Every module name an import statement anywhere in `tree` names.

  `from a import b` names `a.b` when that is one of `modules`, else `a`
  (the package `a` whose attribute `b` is imported).
  """
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.extend(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # Relative: resolve against this module's package.
        base = module.split('.')
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        source = '.'.join(base + ([node.module] if node.module else []))
      else:
        source = node.module
      for alias in node.names:
        submodule = f'{source}.{alias.name}'
        names.append(submodule if submodule in modules else source)
  return names


def _import_graph():
  """{module: set of package modules it imports}, for the whole package."""
  modules = _modules()
  graph = {}
  for module, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    is_package = path.endswith('__init__.py')
    targets = set()
    for name in _imported_names(tree, module, is_package, modules):
      # The longest prefix that is one of our modules.
      parts = name.split('.')
      while parts and '.'.join(parts) not in modules:
        parts.pop()
      if parts and '.'.join(parts) != module:
        targets.add('.'.join(parts))
    graph[module] = targets
  return graph


def _find_cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}  # module -> 'visiting' | 'done'
  stack = []

  def visit(module):
    state[module] = 'visiting'
    stack.append(module)
    for target in sorted(graph[module]):
      if state.get(target) == 'visiting':
        return stack[stack.index(target):] + [target]
      if target not in state:
        cycle = visit(target)
        if cycle:
          return cycle
    stack.pop()
    state[module] = 'done'
    return None

  for module in sorted(graph):
    if module not in state:
      cycle = visit(module)
      if cycle:
        return cycle
  return None


class LayoutTest(tf.test.TestCase):

  def test_the_graph_sees_function_local_imports(self):
    graph = _import_graph()
    # Every module is found, packages included.
    for module in ('tfp_vae', 'tfp_vae.runs', 'tfp_vae.evaluation',
                   'tfp_vae.evaluation.model_evaluation'):
      self.assertIn(module, graph)
    self.assertIn('tfp_vae.runs',
                  graph['tfp_vae.evaluation.model_evaluation'])

  def test_find_cycle_finds_a_planted_cycle(self):
    self.assertEqual(_find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}),
                     ['a', 'b', 'c', 'a'])
    self.assertIsNone(_find_cycle({'a': {'b'}, 'b': set(), 'c': {'a'}}))

  def test_no_import_cycle_in_the_package(self):
    cycle = _find_cycle(_import_graph())
    self.assertIsNone(cycle, msg='Import cycle (function-local imports '
                      f'count): {" -> ".join(cycle or [])}')

  def test_evaluation_and_training_do_not_import_each_other(self):
    graph = _import_graph()
    evaluation = {m for m in graph if m.startswith('tfp_vae.evaluation')}
    for module in evaluation:
      self.assertNotIn('tfp_vae.training', graph[module], msg=module)

  def test_the_library_never_imports_scripts_or_flags(self):
    for module, path in _modules().items():
      with open(path) as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
          names = [f'{node.module}.{alias.name}' for alias in node.names]
        else:
          continue
        for name in names:
          self.assertNotIn(name.split('.')[0], ('scripts', '_flags'),
                           msg=f'{module} imports {name}')
          self.assertFalse(name.startswith('absl.flags'),
                           msg=f'{module} imports {name}')

  def test_modules_stay_under_500_lines_unless_they_say_why(self):
    for module, path in _modules().items():
      with open(path) as f:
        source = f.read()
      num_lines = source.count('\n')
      if num_lines <= _MAX_LINES:
        continue
      docstring = ast.get_docstring(ast.parse(source)) or ''
      self.assertIn(
          _LONG_MODULE_MARK, docstring,
          msg=f'{module} has {num_lines} lines (> {_MAX_LINES}): split it '
          f'by concept, or say in its docstring, after '
          f'"{_LONG_MODULE_MARK}", which one concept needs them.')

  def test_package_init_only_re_exports(self):
    # tfp_vae/__init__.py maps each public name to its module (_EXPORTS)
    # and imports it on first use (PEP 562), so that importing a TF-free
    # module (tfp_vae.config, for --help) does not import TensorFlow.
    path = _modules()[_PACKAGE]
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    body = tree.body[1:]  # After the docstring.
    top_level = []
    for node in body:
      if isinstance(node, ast.Assign):
        top_level.extend(getattr(t, 'id', None) for t in node.targets)
      else:
        self.assertIsInstance(node, ast.FunctionDef, msg=ast.dump(node)[:200])
        top_level.append(node.name)
    self.assertCountEqual(top_level, ['_EXPORTS', '__all__', '__getattr__',
                                      '__dir__'])
    package = importlib.import_module(_PACKAGE)
    self.assertCountEqual(package.__all__, package._EXPORTS)
    for name, module_name in package._EXPORTS.items():
      self.assertIs(getattr(package, name),
                    getattr(importlib.import_module(module_name), name))
    with self.assertRaisesRegex(AttributeError, 'no_such_name'):
      getattr(package, 'no_such_name')

  def test_importing_the_tf_free_modules_does_not_import_tensorflow(self):
    # What the scripts import to parse flags and answer --help.
    code = ('import sys; import tfp_vae.config, tfp_vae.names, '
            'tfp_vae._checks; print("tensorflow" in sys.modules)')
    output = subprocess.run([sys.executable, '-c', code], check=True,
                            capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))).stdout
    self.assertEqual(output.strip(), 'False')

  def test_the_readme_layout_table_names_every_module_and_package(self):
    with open(os.path.join(_ROOT, 'README.md')) as f:
      readme = f.read()
    table = readme.split('\n## Layout\n', 1)[1].split('\n## ', 1)[0]
    named = set(re.findall(r'`([\w/.]+)`', table))
    package_dir = os.path.join(_ROOT, _PACKAGE)
    for entry in sorted(os.listdir(package_dir)):
      path = os.path.join(package_dir, entry)
      if entry.endswith('.py'):
        self.assertIn(f'{_PACKAGE}/{entry}', named, 'README layout table')
      elif os.path.isfile(os.path.join(path, '__init__.py')):
        self.assertIn(f'{_PACKAGE}/{entry}/', named, 'README layout table')
        for module in sorted(os.listdir(path)):
          if module.endswith('.py') and module != '__init__.py':
            self.assertIn(module, named,
                          f'README layout table, {_PACKAGE}/{entry}/')


if __name__ == '__main__':
  tf.test.main()
