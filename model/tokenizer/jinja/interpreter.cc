// Scoping follows jinja2: `if` shares its scope, each `for` iteration and each macro call gets
// a fresh one (so a `set` inside a loop is gone at the next iteration, which is why templates
// carry state in namespace() objects).
#include "model/tokenizer/jinja/interpreter.h"

#include <cmath>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/jinja/builtins.h"
#include "model/tokenizer/jinja/operators.h"
#include "model/tokenizer/jinja/text.h"

namespace iquest::jinja {
namespace {

struct Scope {
  explicit Scope(std::shared_ptr<Scope> parent) : parent(std::move(parent)) {}
  absl::flat_hash_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;  // Null for the globals.

  const Value* Find(const std::string& name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent.get()) {
      const auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

// Prefixes "template line N: " unless the error already names one or came from
// raise_exception, whose message is the template author's own.
absl::Status AtLine(const absl::Status& status, int line) {
  if (status.ok() || IsTemplateRaised(status) ||
      absl::string_view(status.message()).substr(0, 14) == "template line ") {
    return status;
  }
  return absl::Status(status.code(), absl::StrCat("template line ", line, ": ", status.message()));
}

absl::Status Fail(int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("template line ", line, ": ", what));
}

class Interpreter {
 public:
  Interpreter(const JinjaLimits& limits) : budget_(limits) {}

  absl::StatusOr<std::string> Run(const Body& body, const Value& context) {
    auto globals = std::make_shared<Scope>(nullptr);
    ValueDict builtins;
    AddGlobals(&budget_, &builtins);
    for (auto& [name, value] : builtins.items) globals->vars[name] = value;
    for (const auto& [name, value] : context.as_dict().items) globals->vars[name] = value;
    top_ = std::make_shared<Scope>(globals);
    std::string out;
    absl::StatusOr<Flow> flow = Exec(body, top_, &out);
    // namespace() objects are the only mutable values, so the only way to a reference cycle
    // (`set ns.me = ns`); emptying them all frees everything.
    budget_.ReleaseNamespaces();
    if (!flow.ok()) return flow.status();
    return out;
  }

 private:
  absl::Status Write(const std::string& s, std::string* out, int line) {
    out->append(s);
    return AtLine(budget_.CheckSize(out->size()), line);
  }

  absl::StatusOr<Flow> Exec(const Body& body, const ScopePtr& scope, std::string* out) {
    for (const auto& stmt : body) {
      RETURN_IF_ERROR(AtLine(budget_.Step(), stmt->line));
      ASSIGN_OR_RETURN(Flow flow, ExecStmt(*stmt, scope, out));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> ExecStmt(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
    switch (stmt.kind) {
      case StmtKind::kText:
        RETURN_IF_ERROR(Write(stmt.name, out, stmt.line));
        return Flow::kNormal;
      case StmtKind::kOutput: {
        ASSIGN_OR_RETURN(Value v, Eval(*stmt.exprs[0], scope));
        RETURN_IF_ERROR(Write(v.Str(), out, stmt.line));
        return Flow::kNormal;
      }
      case StmtKind::kIf:
        for (size_t i = 0; i < stmt.exprs.size(); ++i) {
          ASSIGN_OR_RETURN(Value cond, Eval(*stmt.exprs[i], scope));
          if (cond.Truthy()) return Exec(stmt.bodies[i], scope, out);
        }
        return Exec(stmt.bodies.back(), scope, out);
      case StmtKind::kFor:
        return ExecFor(stmt, scope, out);
      case StmtKind::kSet: {
        ASSIGN_OR_RETURN(Value v, Eval(*stmt.exprs[0], scope));
        if (!stmt.attr.empty()) {
          const Value* ns = scope->Find(stmt.name);
          if (ns == nullptr || !ns->is_dict() || !ns->as_dict().is_namespace) {
            return Fail(stmt.line, "cannot assign attribute on non-namespace object");
          }
          ns->as_dict().Set(stmt.attr, std::move(v));
          return Flow::kNormal;
        }
        RETURN_IF_ERROR(Assign(stmt.targets, v, scope.get(), stmt.line));
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock:
      case StmtKind::kFilterBlock: {
        std::string block;
        ASSIGN_OR_RETURN(Flow flow, Exec(stmt.bodies[0], scope, &block));
        (void)flow;
        block_value_ = Value(std::move(block));
        ASSIGN_OR_RETURN(Value v, Eval(*stmt.exprs[0], scope));
        if (stmt.kind == StmtKind::kFilterBlock) {
          RETURN_IF_ERROR(Write(v.Str(), out, stmt.line));
        } else {
          scope->vars[stmt.name] = std::move(v);
        }
        return Flow::kNormal;
      }
      case StmtKind::kMacro:
        scope->vars[stmt.name] = MakeMacro(stmt, scope);
        return Flow::kNormal;
      case StmtKind::kCallBlock:
        return ExecCallBlock(stmt, scope, out);
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
      case StmtKind::kScope:
        return Exec(stmt.bodies[0], scope, out);
    }
    return Flow::kNormal;
  }

  absl::Status Assign(const std::vector<std::string>& targets, const Value& v, Scope* scope,
                      int line) {
    if (targets.size() == 1) {
      scope->vars[targets[0]] = v;
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<Value>> items = Iterate(v);
    if (!items.ok()) return AtLine(items.status(), line);
    if (items->size() != targets.size()) {
      return Fail(line, absl::StrCat("cannot unpack ", items->size(), " values into ",
                                     targets.size(), " names"));
    }
    for (size_t i = 0; i < targets.size(); ++i) scope->vars[targets[i]] = (*items)[i];
    return absl::OkStatus();
  }

  absl::StatusOr<Flow> ExecFor(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
    ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.exprs[0], scope));
    absl::StatusOr<std::vector<Value>> all = Iterate(iterable);
    if (!all.ok()) return AtLine(all.status(), stmt.line);
    std::vector<Value> items;
    if (stmt.exprs[1] != nullptr) {  // `for x in xs if cond`: filtered before loop.* counts.
      for (Value& item : *all) {
        auto probe = std::make_shared<Scope>(scope);
        RETURN_IF_ERROR(Assign(stmt.targets, item, probe.get(), stmt.line));
        ASSIGN_OR_RETURN(Value keep, Eval(*stmt.exprs[1], probe));
        if (keep.Truthy()) items.push_back(std::move(item));
      }
    } else {
      items = std::move(*all);
    }
    if (items.empty()) return Exec(stmt.bodies[1], scope, out);
    const int64_t n = static_cast<int64_t>(items.size());
    // One loop.cycle for the whole loop, reading the current index; shared, not a reference,
    // because a template can keep `loop` past the loop's end.
    auto index = std::make_shared<int64_t>(0);
    const Value cycle = Value::Function("cycle", [index](CallArgs& args) -> absl::StatusOr<Value> {
      if (args.args.empty()) return absl::InvalidArgumentError("no items for cycling given");
      return args.args[static_cast<size_t>(*index) % args.args.size()];
    });
    for (int64_t i = 0; i < n; ++i) {
      *index = i;
      RETURN_IF_ERROR(AtLine(budget_.Step(), stmt.line));  // An empty body still costs.
      auto iteration = std::make_shared<Scope>(scope);
      RETURN_IF_ERROR(Assign(stmt.targets, items[i], iteration.get(), stmt.line));
      // A fresh dict per iteration: a template may keep `loop` (e.g. in a namespace).
      Value loop = Value::Dict();
      auto& d = loop.as_dict().items;
      d.reserve(12);
      d.emplace_back("index0", Value(i));
      d.emplace_back("index", Value(i + 1));
      d.emplace_back("revindex", Value(n - i));
      d.emplace_back("revindex0", Value(n - i - 1));
      d.emplace_back("first", Value(i == 0));
      d.emplace_back("last", Value(i == n - 1));
      d.emplace_back("length", Value(n));
      d.emplace_back("depth", Value(1));
      d.emplace_back("depth0", Value(0));
      d.emplace_back("previtem",
                     i > 0 ? items[i - 1] : Value(Undefined{"there is no previous item"}));
      d.emplace_back("nextitem",
                     i + 1 < n ? items[i + 1] : Value(Undefined{"there is no next item"}));
      d.emplace_back("cycle", cycle);
      iteration->vars["loop"] = std::move(loop);
      ASSIGN_OR_RETURN(Flow flow, Exec(stmt.bodies[0], iteration, out));
      if (flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value MakeMacro(const Stmt& stmt, const ScopePtr& defined_in) {
    const Stmt* macro = &stmt;
    // Weak: the scope holds the macro, so a strong pointer would be a cycle that never frees.
    // A macro kept past its scope's end (in a namespace) sees the template's top scope.
    std::weak_ptr<Scope> weak_scope = defined_in;
    return Value::Function(stmt.name, [this, macro, weak_scope](CallArgs& args) {
      ScopePtr scope = weak_scope.lock();
      return CallMacro(*macro, scope != nullptr ? scope : top_, args);
    });
  }

  absl::StatusOr<Value> CallMacro(const Stmt& macro, const ScopePtr& defined_in, CallArgs& args) {
    if (macro_depth_ >= budget_.limits().max_recursion_depth) {
      return absl::ResourceExhaustedError(
          absl::StrCat("template line ", macro.line, ": macro '", macro.name,
                       "' nested deeper than ", budget_.limits().max_recursion_depth, " calls"));
    }
    if (args.args.size() > macro.targets.size()) {
      return Fail(macro.line, absl::StrCat("macro '", macro.name, "' takes not more than ",
                                           macro.targets.size(), " argument(s)"));
    }
    auto scope = std::make_shared<Scope>(defined_in);
    for (size_t i = 0; i < macro.targets.size(); ++i) {
      const Value* given = args.Get(i, macro.targets[i]);
      if (given != nullptr) {
        scope->vars[macro.targets[i]] = *given;
      } else if (macro.exprs[i] != nullptr) {
        ASSIGN_OR_RETURN(scope->vars[macro.targets[i]], Eval(*macro.exprs[i], scope));
      } else {
        scope->vars[macro.targets[i]] =
            Value(Undefined{absl::StrCat("parameter '", macro.targets[i], "' was not provided")});
      }
    }
    for (const auto& [key, value] : args.kwargs) {
      const bool known =
          std::find(macro.targets.begin(), macro.targets.end(), key) != macro.targets.end();
      if (key == "caller") {
        scope->vars["caller"] = value;
      } else if (!known) {
        return Fail(macro.line,
                    absl::StrCat("macro '", macro.name, "' takes no keyword argument '", key, "'"));
      }
    }
    ++macro_depth_;
    std::string out;
    absl::StatusOr<Flow> flow = Exec(macro.bodies[0], scope, &out);
    --macro_depth_;
    if (!flow.ok()) return flow.status();
    return Value(std::move(out));
  }

  absl::StatusOr<Flow> ExecCallBlock(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
    const Expr& call = *stmt.exprs.back();
    const Stmt* block = &stmt;
    Value caller =
        Value::Function("caller", [this, block, scope](CallArgs& args) -> absl::StatusOr<Value> {
          auto inner = std::make_shared<Scope>(scope);
          for (size_t i = 0; i < block->targets.size(); ++i) {
            const Value* given = args.Get(i, block->targets[i]);
            if (given != nullptr) {
              inner->vars[block->targets[i]] = *given;
            } else if (block->exprs[i] != nullptr) {
              ASSIGN_OR_RETURN(inner->vars[block->targets[i]], Eval(*block->exprs[i], inner));
            }
          }
          std::string text;
          ASSIGN_OR_RETURN(Flow flow, Exec(block->bodies[0], inner, &text));
          (void)flow;
          return Value(std::move(text));
        });
    ASSIGN_OR_RETURN(Value callee, Eval(*call.children[0], scope));
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1, scope));
    args.kwargs.emplace_back("caller", std::move(caller));
    ASSIGN_OR_RETURN(Value result, Invoke(callee, args, call.line));
    RETURN_IF_ERROR(Write(result.Str(), out, stmt.line));
    return Flow::kNormal;
  }

  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t first, const ScopePtr& scope) {
    CallArgs args;
    for (size_t i = first; i < expr.children.size(); ++i) {
      ASSIGN_OR_RETURN(Value v, Eval(*expr.children[i], scope));
      args.args.push_back(std::move(v));
    }
    for (const auto& [key, value_expr] : expr.kwargs) {
      ASSIGN_OR_RETURN(Value v, Eval(*value_expr, scope));
      args.kwargs.emplace_back(key, std::move(v));
    }
    return args;
  }

  absl::StatusOr<Value> Invoke(const Value& callee, CallArgs& args, int line) {
    if (callee.is_undefined()) return Fail(line, callee.undefined_hint());
    if (!callee.is_callable()) {
      return Fail(line, absl::StrCat("'", callee.TypeName(), "' object is not callable"));
    }
    absl::StatusOr<Value> result = callee.as_callable().fn(args);
    if (!result.ok()) return AtLine(result.status(), line);
    if (result->is_string())
      RETURN_IF_ERROR(AtLine(budget_.CheckSize(result->as_string().size()), line));
    return result;
  }

  absl::StatusOr<Value> Eval(const Expr& expr, const ScopePtr& scope) {
    RETURN_IF_ERROR(AtLine(budget_.Step(), expr.line));
    absl::StatusOr<Value> v = EvalInner(expr, scope);
    if (!v.ok()) return AtLine(v.status(), expr.line);
    return v;
  }

  absl::StatusOr<Value> EvalInner(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalBinary(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalCompare(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalSlice(const Expr& expr, const ScopePtr& scope);

  Budget budget_;
  ScopePtr top_;
  int macro_depth_ = 0;
  Value block_value_;
};

absl::StatusOr<Value> Interpreter::EvalInner(const Expr& expr, const ScopePtr& scope) {
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return expr.literal;
    case ExprKind::kName: {
      const Value* v = scope->Find(expr.name);
      if (v == nullptr) return Value(Undefined{absl::StrCat("'", expr.name, "' is undefined")});
      return *v;
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      for (const auto& child : expr.children) {
        ASSIGN_OR_RETURN(Value v, Eval(*child, scope));
        items.push_back(std::move(v));
      }
      return Value::List(std::move(items), expr.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      Value dict = Value::Dict();
      for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
        ASSIGN_OR_RETURN(Value key, Eval(*expr.children[i], scope));
        ASSIGN_OR_RETURN(Value value, Eval(*expr.children[i + 1], scope));
        if (!key.is_string()) return Fail(expr.line, "dict keys must be strings");
        dict.as_dict().Set(key.as_string(), std::move(value));
      }
      return dict;
    }
    case ExprKind::kGetAttr: {
      ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
      return GetAttribute(obj, expr.name);
    }
    case ExprKind::kGetItem: {
      ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
      ASSIGN_OR_RETURN(Value key, Eval(*expr.children[1], scope));
      if (key.is_string() && !key.as_string().empty() && key.as_string()[0] == '_' &&
          !(obj.is_dict() && obj.as_dict().Find(key.as_string()) != nullptr)) {
        return GetAttribute(obj, key.as_string());  // The sandbox's "unsafe" error.
      }
      return GetItem(obj, key);
    }
    case ExprKind::kSlice:
      return EvalSlice(expr, scope);
    case ExprKind::kCall: {
      ASSIGN_OR_RETURN(Value callee, Eval(*expr.children[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return Invoke(callee, args, expr.line);
    }
    case ExprKind::kFilter: {
      ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return ApplyFilter(budget_, expr.name, operand, args);
    }
    case ExprKind::kTest: {
      ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      ASSIGN_OR_RETURN(bool passed, ApplyTest(budget_, expr.name, operand, args));
      return Value(passed != expr.negated);
    }
    case ExprKind::kNot: {
      ASSIGN_OR_RETURN(Value v, Eval(*expr.children[0], scope));
      return Value(!v.Truthy());
    }
    case ExprKind::kNegate:
    case ExprKind::kPlus: {
      ASSIGN_OR_RETURN(Value v, Eval(*expr.children[0], scope));
      const bool negate = expr.kind == ExprKind::kNegate;
      if (v.is_int()) return Value(negate ? -v.as_int() : v.as_int());
      if (v.is_bool()) return Value(static_cast<int64_t>(negate ? -v.as_bool() : v.as_bool()));
      if (v.is_float()) return Value(negate ? -v.as_float() : v.as_float());
      if (v.is_undefined()) return Fail(expr.line, v.undefined_hint());
      return Fail(expr.line, absl::StrCat("bad operand type for unary ", negate ? "-" : "+", ": '",
                                          v.TypeName(), "'"));
    }
    case ExprKind::kBinary:
      return EvalBinary(expr, scope);
    case ExprKind::kCompare:
      return EvalCompare(expr, scope);
    case ExprKind::kCondition: {
      ASSIGN_OR_RETURN(Value cond, Eval(*expr.children[0], scope));
      if (cond.Truthy()) return Eval(*expr.children[1], scope);
      if (expr.children[2] == nullptr) {
        return Value(Undefined{
            "the inline if-expression evaluated to false and no else section was defined."});
      }
      return Eval(*expr.children[2], scope);
    }
    case ExprKind::kBlockValue:
      return block_value_;
  }
  return Fail(expr.line, "unknown expression");
}

absl::StatusOr<Value> Interpreter::EvalSlice(const Expr& expr, const ScopePtr& scope) {
  ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (expr.children[i + 1] == nullptr) continue;
    ASSIGN_OR_RETURN(Value b, Eval(*expr.children[i + 1], scope));
    if (b.is_none()) continue;
    if (!b.is_int()) return Fail(expr.line, "slice indices must be integers or None");
    bounds[i] = b.as_int();
  }
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) return Fail(expr.line, "slice step cannot be zero");
  if (obj.is_undefined()) return Fail(expr.line, obj.undefined_hint());
  std::u32string cps;
  const bool is_string = obj.is_string();
  if (is_string) cps = text::Decode(obj.as_string());
  if (!is_string && !obj.is_list()) {
    return Fail(expr.line, absl::StrCat("'", obj.TypeName(), "' object is not subscriptable"));
  }
  const int64_t n = is_string ? static_cast<int64_t>(cps.size())
                              : static_cast<int64_t>(obj.as_list().items.size());
  // Python's PySlice_AdjustIndices.
  const auto adjust = [&](std::optional<int64_t> b, int64_t fallback) {
    if (!b) return fallback;
    int64_t x = *b < 0 ? *b + n : *b;
    if (step > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t start = adjust(bounds[0], step > 0 ? 0 : n - 1);
  const int64_t stop = adjust(bounds[1], step > 0 ? n : -1);
  std::vector<int64_t> picked;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) picked.push_back(i);
  if (is_string) {
    std::u32string out;
    for (int64_t i : picked) out.push_back(cps[static_cast<size_t>(i)]);
    return Value(text::Encode(out));
  }
  std::vector<Value> out;
  for (int64_t i : picked) out.push_back(obj.as_list().items[static_cast<size_t>(i)]);
  return Value::List(std::move(out), obj.as_list().is_tuple);
}

absl::StatusOr<Value> Interpreter::EvalBinary(const Expr& expr, const ScopePtr& scope) {
  ASSIGN_OR_RETURN(Value a, Eval(*expr.children[0], scope));
  if (expr.name == "and") {
    if (!a.Truthy()) return a;
    return Eval(*expr.children[1], scope);
  }
  if (expr.name == "or") {
    if (a.Truthy()) return a;
    return Eval(*expr.children[1], scope);
  }
  ASSIGN_OR_RETURN(Value b, Eval(*expr.children[1], scope));
  if (expr.name == "~") {
    std::string out = a.Str();
    RETURN_IF_ERROR(budget_.CheckSize(out.size() + b.Str().size()));
    out += b.Str();
    return Value(std::move(out));
  }
  return Arithmetic(expr.name, a, b, budget_);
}

absl::StatusOr<Value> Interpreter::EvalCompare(const Expr& expr, const ScopePtr& scope) {
  ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    ASSIGN_OR_RETURN(Value right, Eval(*expr.children[i + 1], scope));
    const std::string& op = expr.ops[i];
    bool result = false;
    if (op == "==") {
      result = Equals(left, right);
    } else if (op == "!=") {
      result = !Equals(left, right);
    } else if (op == "in" || op == "notin") {
      ASSIGN_OR_RETURN(bool found, Contains(right, left));
      result = found == (op == "in");
    } else {
      if (left.is_undefined()) return Fail(expr.line, left.undefined_hint());
      if (right.is_undefined()) return Fail(expr.line, right.undefined_hint());
      if (op == "<") {
        ASSIGN_OR_RETURN(result, LessThan(left, right));
      } else if (op == ">") {
        ASSIGN_OR_RETURN(result, LessThan(right, left));
      } else if (op == "<=") {
        ASSIGN_OR_RETURN(bool greater, LessThan(right, left));
        result = !greater;
      } else {
        ASSIGN_OR_RETURN(bool less, LessThan(left, right));
        result = !less;
      }
    }
    if (!result) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

}  // namespace

absl::StatusOr<std::string> RenderBody(const Body& body, const Value& context,
                                       const JinjaLimits& limits) {
  return Interpreter(limits).Run(body, context);
}

}  // namespace iquest::jinja
